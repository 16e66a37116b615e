//! The fault registry: one entry per fault type (one file each), with its parameters and what it
//! does on each backend. The table drives parsing, `--help`-style listings and the docs.
