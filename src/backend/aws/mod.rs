//! The AWS backend: ECS, FIS, RDS, Secrets Manager, CloudWatch and ELBv2 through the official SDK.

use super::{BackendError, Injected, Resolved, Sample};
use crate::scenario::{AwsTarget, Fault, Scenario};
use crate::util::Rng;

pub struct AwsBackend {}

fn unimplemented() -> BackendError {
    BackendError::Api("the aws backend is not implemented yet".into())
}

impl AwsBackend {
    pub async fn connect(target: &AwsTarget, run_id: &str) -> Result<Self, BackendError> {
        let _ = (target, run_id);
        Err(unimplemented())
    }
    pub fn locator(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    pub async fn reconnect(locator: &serde_json::Value) -> Result<Option<Self>, BackendError> {
        let _ = locator;
        Err(unimplemented())
    }
    pub fn entry_url(&self) -> String {
        String::new()
    }
    pub async fn preflight(&self, scenario: &Scenario) -> Result<(), BackendError> {
        let _ = scenario;
        Err(unimplemented())
    }
    pub async fn resolve(&self, fault: &Fault, rng: &mut Rng) -> Result<Resolved, BackendError> {
        let _ = (fault, rng);
        Err(unimplemented())
    }
    pub async fn prepare(&self, fault: &Fault, resolved: &Resolved, run_id: &str) -> Result<Injected, BackendError> {
        let _ = (fault, resolved, run_id);
        Err(unimplemented())
    }
    pub async fn inject(&self, fault: &Fault, injected: &Injected, run_id: &str) -> Result<(), BackendError> {
        let _ = (fault, injected, run_id);
        Err(unimplemented())
    }
    pub async fn revert(&self, injected: &Injected) -> Result<(), BackendError> {
        let _ = injected;
        Err(unimplemented())
    }
    pub async fn sample(&self) -> Result<Sample, BackendError> {
        Err(unimplemented())
    }
    pub async fn alarm_firing(&self, name: &str) -> Result<bool, BackendError> {
        let _ = name;
        Err(unimplemented())
    }
    pub async fn shutdown(self) -> Result<(), BackendError> {
        Ok(())
    }
}
