//! The scenario format as serde-shaped types, for the JSON Schema that `siege schema` prints (and
//! editors use through yaml-language-server). Unknown keys are refused (`additionalProperties:
//! false`), faults are told apart by their explicit `type:` tag, and unit strings carry patterns.
//! The checker in [`super::validate`] is what reads files; a test keeps the keys of both in step.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use crate::faults::{self, ParamKind, Timing};

const DURATION_PATTERN: &str = r"^\s*([0-9]+(\.[0-9]+)?(ms|s|m|h))+\s*$";
const RATE_PATTERN: &str = r"^\s*[0-9]+(\.[0-9]+)?\s*/\s*(s|m|h)\s*$";
const PERCENT_PATTERN: &str = r"^\s*[0-9]+(\.[0-9]+)?\s*%\s*$";
const COMPARISON_PATTERN: &str = r"^\s*(<=|>=|==|<|>)\s*[0-9.]+\s*(%|ms|s|m|/s|/m|/h)?\s*$";
const THRESHOLD_PATTERN: &str =
    r"^\s*[a-z0-9_]+\s*(<=|>=|==|<|>)\s*[0-9.]+\s*(%|ms|s|m|/s|/m|/h)?\s+for\s+([0-9]+(\.[0-9]+)?(ms|s|m|h))+\s*$";

/// A scenario: a target, a load profile, a steady state, faults on a timeline, stop conditions
/// and a recovery deadline.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields, title = "siege scenario", extend("patternProperties" = { "^x-": {} }))]
#[allow(dead_code)]
pub struct ScenarioSpec {
    /// Short identifier: letters, digits, `-`, `_`, `.`; names the report directory.
    name: String,
    /// One or two sentences for the report.
    description: Option<String>,
    /// Path of the runbook, relative to the scenario file's directory; must exist.
    runbook: Option<String>,
    /// Seed for the random selection of tasks; absent: a fresh one, printed in the report.
    #[schemars(range(min = 0))]
    seed: Option<u64>,
    /// What the scenario runs against; default: the embedded lab with 3 tasks.
    target: Option<TargetSpec>,
    load: LoadSpec,
    /// The hypothesis, checked before the faults and for recovery: metric → comparison.
    steady_state: SteadyStateSpec,
    /// Faults on the timeline.
    faults: Option<Vec<FaultSpec>>,
    /// The manual catalog: faults without `at`, injected only when commanded during the run.
    manual: Option<Vec<ManualFaultSpec>>,
    /// Any one aborts the run; every fault is then reverted.
    stop: Option<Vec<StopSpec>>,
    recovery: RecoverySpec,
}

/// Exactly one of `lab` or `aws`.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields, extend("minProperties" = 1, "maxProperties" = 1))]
#[allow(dead_code)]
pub struct TargetSpec {
    lab: Option<LabSpec>,
    aws: Option<AwsSpec>,
}

/// The embedded practice lab.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub struct LabSpec {
    /// Service name (labels reports); default `api`.
    service: Option<String>,
    /// Desired task count, 1–20; default 3.
    #[schemars(range(min = 1, max = 20))]
    tasks: Option<u32>,
    /// Control URL of a lab started with `siege lab up`; absent: a lab is started for the run.
    control: Option<String>,
    autoscaling: Option<AutoscalingSpec>,
}

/// Target tracking on average task CPU.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub struct AutoscalingSpec {
    #[schemars(range(min = 1, max = 20))]
    min: u32,
    #[schemars(range(min = 1, max = 20))]
    max: u32,
    /// Average CPU to keep, e.g. `50%`.
    target_cpu: PercentText,
    /// Wait between two scaling actions; default `20s`.
    cooldown: Option<DurationText>,
}

/// A service on AWS ECS behind an ALB.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub struct AwsSpec {
    /// e.g. `us-east-1`; default: the SDK's region chain (`AWS_REGION`, `AWS_DEFAULT_REGION`,
    /// the profile's `region`).
    region: Option<String>,
    /// 12-digit account id, quoted; siege refuses to mutate anything in another account.
    #[schemars(regex(pattern = r"^[0-9]{12}$"))]
    account: Option<String>,
    /// ECS cluster name or ARN.
    cluster: String,
    /// ECS service name.
    service: String,
    /// Target group ARN (healthy targets).
    target_group: Option<String>,
    /// Load balancer name as in CloudWatch dimensions, e.g. `app/prod-lb/123`.
    load_balancer: Option<String>,
    /// Aurora cluster id, for `db-failover`.
    db_cluster: Option<String>,
    /// Secrets Manager secret id or ARN, for `secret-drift`.
    secret: Option<String>,
    /// Base URL the load is sent to (the ALB's DNS name).
    url: Option<String>,
    /// Endpoint override for every AWS service (a local emulator).
    endpoint: Option<String>,
    /// IAM role ARN that FIS assumes, for `cpu-stress` and `latency`.
    fis_role: Option<String>,
    /// Largest percentage a fault may select; default `50%`.
    max_select: Option<PercentText>,
    /// Allow selections above `max_select`; default false.
    allow_full_outage: Option<bool>,
}

/// The open-model load: a constant arrival rate, changed by stages.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub struct LoadSpec {
    /// A path relative to the target's entry point (`/`, `/work?ms=5`), or an absolute URL.
    url: String,
    rate: RateText,
    stages: Option<Vec<StageSpec>>,
    /// How long the load runs; the whole timeline happens within it.
    duration: DurationText,
    /// Per-request timeout; default `2s`.
    timeout: Option<DurationText>,
    /// `https://`: accept any certificate, self-signed or for another name (test endpoints
    /// only); default `false`.
    insecure_tls: Option<bool>,
}

/// A different rate for a while (a spike).
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub struct StageSpec {
    at: DurationText,
    rate: RateText,
    /// How long the stage lasts (`duration` is a synonym).
    #[schemars(rename = "for")]
    for_: Option<DurationText>,
    duration: Option<DurationText>,
    /// Linear ramp from the base rate; default `0s`.
    ramp: Option<DurationText>,
}

/// Metric → comparison, e.g. `error_rate: "< 1%"`, `p95: "< 250ms"`, `healthy_targets: ">= 2"`.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields, extend("minProperties" = 1))]
#[allow(dead_code)]
pub struct SteadyStateSpec {
    /// Failed requests / all requests, in percent: `"< 1%"`.
    error_rate: Option<ComparisonText>,
    /// Achieved requests per second: `">= 90"`.
    rps: Option<ComparisonText>,
    /// Latency percentile with its unit: `"< 250ms"`.
    p50: Option<ComparisonText>,
    p95: Option<ComparisonText>,
    p99: Option<ComparisonText>,
    /// Healthy targets behind the balancer: `">= 2"`.
    healthy_targets: Option<ComparisonText>,
    /// Running tasks of the service: `">= 3"`.
    running_tasks: Option<ComparisonText>,
}

/// When the run counts as recovered.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub struct RecoverySpec {
    /// The steady state must hold again within this long after the last disruption.
    within: DurationText,
    /// How long it must hold in a row; default `5s`.
    hold: Option<DurationText>,
}

/// Defines a string schema with a pattern.
macro_rules! text_schema {
    ($ty:ident, $name:literal, $pattern:expr, $desc:literal) => {
        #[doc = $desc]
        pub struct $ty;
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "type": "string", "pattern": $pattern, "description": $desc })
            }
        }
    };
}

text_schema!(
    DurationText,
    "Duration",
    DURATION_PATTERN,
    "A duration with its unit: `250ms`, `30s`, `2m`, `1m30s`, `1h`."
);
text_schema!(RateText, "Rate", RATE_PATTERN, "Requests per unit of time: `100/s`, `6000/m`.");
text_schema!(PercentText, "Percent", PERCENT_PATTERN, "A percentage: `50%`.");
text_schema!(
    ComparisonText,
    "Comparison",
    COMPARISON_PATTERN,
    "An operator and a value in the metric's unit: `\"< 1%\"`, `\"< 250ms\"`, `\">= 2\"` (quote it)."
);

/// A fault: one schema per `type`, generated from the fault registry.
pub struct FaultSpec;

impl JsonSchema for FaultSpec {
    fn schema_name() -> Cow<'static, str> {
        "Fault".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        fault_variants(generator, true)
    }
}

/// A fault of the manual catalog: as [`FaultSpec`] without `at`.
pub struct ManualFaultSpec;

impl JsonSchema for ManualFaultSpec {
    fn schema_name() -> Cow<'static, str> {
        "ManualFault".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        fault_variants(generator, false)
    }
}

/// One schema per fault type; `timed`: with the `at` of the timeline.
fn fault_variants(generator: &mut SchemaGenerator, timed: bool) -> Schema {
    let duration = generator.subschema_for::<DurationText>();
    let mut variants = Vec::new();
    for def in faults::REGISTRY {
        let mut props = serde_json::Map::new();
        props.insert("type".into(), serde_json::json!({ "const": def.name, "description": def.summary }));
        props.insert("name".into(), serde_json::json!({ "type": "string", "description": "Unique name across `faults` and `manual`; default: the type, suffixed when repeated." }));
        let mut required = vec!["type".to_string()];
        if timed {
            props.insert("at".into(), with_description(&duration, "When to inject it, from the start of the load."));
            required.push("at".to_string());
        }
        if def.timing == Timing::Window {
            let lasts = if timed { "How long it lasts" } else { "How long it lasts from its injection" };
            props.insert("for".into(), with_description(&duration, &format!("{lasts} (`duration` is a synonym).")));
            props.insert("duration".into(), with_description(&duration, "Synonym of `for`."));
        }
        for p in def.params {
            let s = match p.kind {
                ParamKind::Selection => serde_json::json!({
                    "oneOf": [
                        { "type": "integer", "minimum": 1 },
                        { "type": "string", "pattern": PERCENT_PATTERN }
                    ]
                }),
                ParamKind::Duration => duration.as_value().clone(),
                ParamKind::Percent => serde_json::json!({
                    "oneOf": [
                        { "type": "integer", "minimum": 1, "maximum": 100 },
                        { "type": "string", "pattern": PERCENT_PATTERN }
                    ]
                }),
                ParamKind::Signal => serde_json::json!({ "enum": ["SIGKILL", "SIGTERM"] }),
                ParamKind::Text => serde_json::json!({ "type": "string" }),
            };
            let mut s = Schema::try_from(s).unwrap_or_default();
            let mut doc = p.doc.to_string();
            if let Some(b) = p.backend {
                doc.push_str(&format!(" ({b} only)"));
            }
            if let Some(d) = p.default {
                doc.push_str(&format!("; default `{d}`"));
            }
            s.insert("description".into(), doc.into());
            props.insert(p.name.into(), s.to_value());
            if p.default.is_none() && p.backend.is_none() {
                required.push(p.name.into());
            }
        }
        variants.push(serde_json::json!({
            "type": "object",
            "description": format!("{} Lab: {}. AWS: {}.", def.summary, def.lab, def.aws),
            "properties": props,
            "required": required,
            "additionalProperties": false,
        }));
    }
    json_schema!({ "oneOf": variants })
}

fn with_description(schema: &Schema, desc: &str) -> serde_json::Value {
    serde_json::json!({ "allOf": [schema.as_value()], "description": desc })
}

/// A stop condition: a threshold string, a CloudWatch alarm or a maximum duration.
pub struct StopSpec;

impl JsonSchema for StopSpec {
    fn schema_name() -> Cow<'static, str> {
        "StopCondition".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let duration = generator.subschema_for::<DurationText>();
        json_schema!({
            "oneOf": [
                {
                    "type": "string",
                    "pattern": THRESHOLD_PATTERN,
                    "description": "METRIC OP VALUE for DURATION: the comparison held in every one-second window for that long, e.g. \"error_rate > 50% for 15s\"."
                },
                {
                    "type": "object",
                    "properties": { "alarm": { "type": "string", "description": "A CloudWatch alarm name; trips when it is in ALARM (aws only)." } },
                    "required": ["alarm"],
                    "additionalProperties": false
                },
                {
                    "type": "object",
                    "properties": { "max_duration": duration },
                    "required": ["max_duration"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

/// The JSON Schema of the scenario format, pretty-printed.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(ScenarioSpec);
    serde_json::to_string_pretty(&schema).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::validate::*;

    fn props(schema: &serde_json::Value, def: &str) -> Vec<String> {
        let obj = if def.is_empty() { schema } else { &schema["$defs"][def] };
        let mut keys: Vec<String> =
            obj["properties"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        keys.sort();
        keys
    }

    fn sorted(keys: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = keys.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    /// The schema and the checker must accept the same keys.
    #[test]
    fn schema_keys_match_the_checker() {
        let schema: serde_json::Value = serde_json::from_str(&schema_json()).unwrap();
        assert_eq!(props(&schema, ""), sorted(TOP_KEYS));
        assert_eq!(props(&schema, "TargetSpec"), sorted(TARGET_KEYS));
        assert_eq!(props(&schema, "LabSpec"), sorted(LAB_KEYS));
        assert_eq!(props(&schema, "AutoscalingSpec"), sorted(AUTOSCALING_KEYS));
        assert_eq!(props(&schema, "AwsSpec"), sorted(AWS_KEYS));
        assert_eq!(props(&schema, "LoadSpec"), sorted(LOAD_KEYS));
        assert_eq!(props(&schema, "StageSpec"), sorted(STAGE_KEYS));
        assert_eq!(props(&schema, "RecoverySpec"), sorted(RECOVERY_KEYS));
        let metrics: Vec<&str> = crate::scenario::Metric::ALL.iter().map(|(n, _)| *n).collect();
        assert_eq!(props(&schema, "SteadyStateSpec"), sorted(&metrics));
        let faults = schema["$defs"]["Fault"]["oneOf"].as_array().unwrap();
        for (v, def) in faults.iter().zip(crate::faults::REGISTRY) {
            assert_eq!(props(v, ""), sorted(&def.keys()), "{}", def.name);
        }
        let manual = schema["$defs"]["ManualFault"]["oneOf"].as_array().unwrap();
        assert_eq!(manual.len(), crate::faults::REGISTRY.len());
        for (v, def) in manual.iter().zip(crate::faults::REGISTRY) {
            let keys: Vec<&str> = def.keys().into_iter().filter(|k| *k != "at").collect();
            assert_eq!(props(v, ""), sorted(&keys), "{}", def.name);
            assert!(!v["required"].as_array().unwrap().contains(&"at".into()), "{}", def.name);
        }
        assert_eq!(schema["additionalProperties"], false);
    }
}
