//! Observation: the steady-state hypothesis, stop conditions and the verdict, evaluated over the
//! per-second windows of load and the backend's samples.
