//! Observation: ALB target health (ELBv2), ALB and ECS metrics (CloudWatch `GetMetricData`),
//! CloudWatch alarm state for `alarm:` stop conditions, and new ECS service events.

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{AlarmType, Dimension, Metric, MetricDataQuery, MetricStat, ScanBy, StateValue};
use aws_sdk_ecs::types::ServiceEvent;
use serde::Serialize;

use super::AwsBackend;
use super::error::aws_error;
use crate::backend::BackendError;

/// Longest one metric's `GetMetricData` may take, retries included.
const METRIC_DEADLINE: Duration = Duration::from_secs(10);
/// Period and look-back of the metric queries.
pub(super) const PERIOD_SECS: i32 = 60;
const LOOK_BACK: Duration = Duration::from_secs(5 * 60);

/// The latest minute of the ALB's and the service's CloudWatch metrics; `None` where the target
/// names no balancer or CloudWatch has no datapoint yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CloudMetrics {
    /// `AWS/ApplicationELB RequestCount`, sum over the minute.
    pub request_count: Option<f64>,
    /// `HTTPCode_ELB_5XX_Count + HTTPCode_Target_5XX_Count`, sum over the same minute as
    /// `request_count`.
    pub http_5xx: Option<f64>,
    /// `TargetResponseTime` p95, in milliseconds.
    pub target_response_p95_ms: Option<f64>,
    /// `AWS/ECS CPUUtilization` of the service, average percent of the tasks' reserved CPU.
    pub cpu_percent: Option<f64>,
    /// The metrics that could not be read: their values above are `None`.
    pub failed: Vec<MetricFailure>,
}

/// A metric `GetMetricData` could not read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricFailure {
    /// `RequestCount`, `TargetResponseTime p95`, …
    pub metric: &'static str,
    /// The [`crate::backend::Sample`] fields it feeds.
    pub fields: &'static [&'static str],
    /// One line: `cloudwatch GetMetricData: InternalFailure: …`.
    pub error: String,
}

/// Metrics read together (and sampled by one task): the balancer's request and 5xx counts (of
/// the same minute), its response time, the service's CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MetricGroup {
    AlbCounts,
    AlbLatency,
    Cpu,
}

impl MetricGroup {
    pub(super) const ALL: [MetricGroup; 3] = [MetricGroup::AlbCounts, MetricGroup::AlbLatency, MetricGroup::Cpu];

    /// What a read of the whole group is called in events.
    pub(super) fn label(self) -> &'static str {
        match self {
            MetricGroup::AlbCounts => "ALB request counts",
            MetricGroup::AlbLatency => "TargetResponseTime",
            MetricGroup::Cpu => "CPUUtilization",
        }
    }

    /// The metrics of the group, as named in [`MetricFailure::metric`].
    pub(super) fn metrics(self) -> &'static [&'static str] {
        match self {
            MetricGroup::AlbCounts => &["RequestCount", "HTTPCode_ELB_5XX_Count", "HTTPCode_Target_5XX_Count"],
            MetricGroup::AlbLatency => &["TargetResponseTime p95"],
            MetricGroup::Cpu => &["CPUUtilization"],
        }
    }

    /// The [`crate::backend::Sample`] fields this group feeds.
    pub(super) fn fields(self) -> &'static [&'static str] {
        match self {
            MetricGroup::AlbCounts => &["lb_rps", "lb_5xx_rate"],
            MetricGroup::AlbLatency => &["lb_response_ms"],
            MetricGroup::Cpu => &["cpu_percent"],
        }
    }
}

/// Datapoints of one metric, newest first: (start of the minute, value).
type Series = Vec<(i64, f64)>;

/// The value of the minute starting at `t`.
fn value_at(series: &Series, t: i64) -> Option<f64> {
    series.iter().find(|(at, _)| *at == t).map(|(_, v)| *v)
}

/// The newest ECS service event already reported: its time and id.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct EventMark {
    at: (i64, u32),
    id: String,
}

/// `(healthy, unhealthy)` among target states. Targets still registering (`initial`), leaving
/// (`draining`, `unhealthy.draining`) or not in use (`unused`) count as neither, as in the ALB's
/// own `HealthyHostCount` / `UnHealthyHostCount`: a replacement task passing its first health
/// checks is not a failure. A state siege does not know counts as unhealthy.
fn count_health<'a>(states: impl Iterator<Item = Option<&'a str>>) -> (u32, u32) {
    let (mut healthy, mut unhealthy) = (0, 0);
    for state in states {
        match state {
            Some("healthy") => healthy += 1,
            Some("initial" | "draining" | "unhealthy.draining" | "unused") => {}
            _ => unhealthy += 1,
        }
    }
    (healthy, unhealthy)
}

/// DNS name and CloudWatch dimension (`app/NAME/ID`) of the balancer given by ARN, by
/// `app/NAME/ID` or by name.
pub(super) async fn describe_load_balancer(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    lb: &str,
) -> Result<(String, String), BackendError> {
    let request = elb.describe_load_balancers();
    let request = if lb.starts_with("arn:") {
        request.load_balancer_arns(lb)
    } else {
        let name = lb.strip_prefix("app/").and_then(|s| s.split('/').next()).unwrap_or(lb);
        request.names(name)
    };
    let out = request.send().await.map_err(|e| aws_error("elasticloadbalancing:DescribeLoadBalancers", e))?;
    let found = out.load_balancers().first();
    let dns = found.and_then(|l| l.dns_name()).filter(|d| !d.is_empty());
    let arn = found.and_then(|l| l.load_balancer_arn()).unwrap_or(lb);
    match dns {
        Some(dns) => Ok((dns.to_string(), lb_dimension(arn))),
        None => Err(BackendError::NotFound(format!("load balancer {lb}"))),
    }
}

/// `DescribeAlarms` for one alarm by name, metric or composite: without `AlarmTypes`, CloudWatch
/// returns metric alarms only.
fn alarm_query(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    name: &str,
) -> aws_sdk_cloudwatch::operation::describe_alarms::builders::DescribeAlarmsFluentBuilder {
    cloudwatch
        .describe_alarms()
        .alarm_names(name)
        .alarm_types(AlarmType::MetricAlarm)
        .alarm_types(AlarmType::CompositeAlarm)
}

impl AwsBackend {
    /// `(healthy, unhealthy)` targets of the target group; see [`count_health`].
    pub(super) async fn target_health(&self, target_group: &str) -> Result<(u32, u32), BackendError> {
        let arn = self.target_group_arn(target_group).await?;
        let out = self
            .clients
            .elb
            .describe_target_health()
            .target_group_arn(arn)
            .send()
            .await
            .map_err(|e| aws_error("elasticloadbalancing:DescribeTargetHealth", e))?;
        Ok(count_health(
            out.target_health_descriptions()
                .iter()
                .map(|d| d.target_health().and_then(|h| h.state()).map(|s| s.as_str())),
        ))
    }

    /// The ARN of a target group given by ARN or by name.
    async fn target_group_arn(&self, target_group: &str) -> Result<String, BackendError> {
        if target_group.starts_with("arn:") {
            return Ok(target_group.to_string());
        }
        let out = self
            .clients
            .elb
            .describe_target_groups()
            .names(target_group)
            .send()
            .await
            .map_err(|e| aws_error("elasticloadbalancing:DescribeTargetGroups", e))?;
        out.target_groups()
            .first()
            .and_then(|t| t.target_group_arn())
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .ok_or_else(|| BackendError::NotFound(format!("target group {target_group}")))
    }

    /// Whether the alarm is in state ALARM; an alarm that does not exist is an error.
    pub(super) async fn alarm_state(&self, name: &str) -> Result<bool, BackendError> {
        let out = alarm_query(&self.clients.cloudwatch, name)
            .send()
            .await
            .map_err(|e| aws_error("cloudwatch:DescribeAlarms", e))?;
        let alarm = out
            .metric_alarms()
            .iter()
            .find(|a| a.alarm_name() == Some(name))
            .map(|a| a.state_value().cloned())
            .or_else(|| {
                out.composite_alarms().iter().find(|a| a.alarm_name() == Some(name)).map(|a| a.state_value().cloned())
            });
        match alarm {
            Some(state) => Ok(state == Some(StateValue::Alarm)),
            None => Err(BackendError::NotFound(format!("CloudWatch alarm {name} (region {})", self.region))),
        }
    }

    /// The latest minute of ALB request count, 5xx, p95 target response time and service CPU:
    /// [`AwsBackend::metric_groups`] of every group.
    pub async fn cloud_metrics(&self) -> CloudMetrics {
        self.metric_groups(&MetricGroup::ALL).await
    }

    /// The metrics of `groups`: one `GetMetricData` request per metric, all at once and each
    /// under [`METRIC_DEADLINE`], because one failing query fails its whole request (moto
    /// answers 500 to a `p95` query once there is data, AWS refuses a malformed one): a metric
    /// that cannot be read is `None` and listed in [`CloudMetrics::failed`]; the others are
    /// still read. The balancer's metrics are not asked for without a balancer.
    pub(super) async fn metric_groups(&self, groups: &[MetricGroup]) -> CloudMetrics {
        let lb = self.lb_dimension.as_deref();
        let alb = |group: MetricGroup, id: &'static str, metric: &str, stat: &str| {
            lb.filter(|_| groups.contains(&group))
                .map(|lb| query(id, "AWS/ApplicationELB", metric, &[("LoadBalancer", lb)], stat))
        };
        let cpu = groups.contains(&MetricGroup::Cpu).then(|| {
            query(
                "cpu",
                "AWS/ECS",
                "CPUUtilization",
                &[("ClusterName", &self.target.cluster), ("ServiceName", &self.target.service)],
                "Average",
            )
        });
        let (requests, elb5xx, target5xx, p95, cpu) = tokio::join!(
            self.metric_series(alb(MetricGroup::AlbCounts, "requests", "RequestCount", "Sum")),
            self.metric_series(alb(MetricGroup::AlbCounts, "elb5xx", "HTTPCode_ELB_5XX_Count", "Sum")),
            self.metric_series(alb(MetricGroup::AlbCounts, "target5xx", "HTTPCode_Target_5XX_Count", "Sum")),
            self.metric_series(alb(MetricGroup::AlbLatency, "p95", "TargetResponseTime", "p95")),
            self.metric_series(cpu),
        );
        let mut failed = Vec::new();
        let mut ok = |series: Result<Series, BackendError>, metric: &'static str, fields: &'static [&'static str]| {
            series.map_err(|e| failed.push(MetricFailure { metric, fields, error: e.to_string() })).ok()
        };
        let requests = ok(requests, "RequestCount", &["lb_rps", "lb_5xx_rate"]);
        let elb5xx = ok(elb5xx, "HTTPCode_ELB_5XX_Count", &["lb_5xx_rate"]);
        let target5xx = ok(target5xx, "HTTPCode_Target_5XX_Count", &["lb_5xx_rate"]);
        let p95 = ok(p95, "TargetResponseTime p95", &["lb_response_ms"]);
        let cpu = ok(cpu, "CPUUtilization", &["cpu_percent"]);
        // Requests and 5xx of the same minute: the newest one with requests. ALB publishes no
        // 5xx datapoint for a minute without any, so a missing one is 0 when that minute had
        // requests.
        let newest = requests.as_ref().and_then(|r| r.first().copied());
        let request_count = newest.map(|(_, n)| n);
        let http_5xx = match (newest, &elb5xx, &target5xx) {
            (Some((t, _)), Some(e), Some(g)) => Some(value_at(e, t).unwrap_or(0.0) + value_at(g, t).unwrap_or(0.0)),
            _ => None,
        };
        CloudMetrics {
            request_count,
            http_5xx,
            target_response_p95_ms: p95.and_then(|s| s.first().map(|(_, v)| v * 1000.0)),
            cpu_percent: cpu.and_then(|s| s.first().map(|(_, v)| *v)),
            failed,
        }
    }

    /// The datapoints of one query, newest first, as (minute start, value); empty when
    /// CloudWatch has none or there is nothing to ask (`None`: no balancer).
    async fn metric_series(&self, query: Option<MetricDataQuery>) -> Result<Series, BackendError> {
        let Some(query) = query else { return Ok(Vec::new()) };
        // Whole minutes only: the minute in progress would read as a drop in traffic.
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let end = now - now.rem_euclid(i64::from(PERIOD_SECS));
        let start = end - LOOK_BACK.as_secs() as i64;
        let id = query.id().unwrap_or_default().to_string();
        let call = self
            .clients
            .cloudwatch
            .get_metric_data()
            .metric_data_queries(query)
            .start_time(DateTime::from_secs(start))
            .end_time(DateTime::from_secs(end))
            .scan_by(ScanBy::TimestampDescending)
            .send();
        let out = match tokio::time::timeout(METRIC_DEADLINE, call).await {
            Ok(out) => out.map_err(|e| aws_error("cloudwatch:GetMetricData", e))?,
            Err(_) => {
                return Err(BackendError::Api(format!(
                    "cloudwatch GetMetricData: no answer within {}s",
                    METRIC_DEADLINE.as_secs()
                )));
            }
        };
        let Some(r) = out.metric_data_results().iter().find(|r| r.id() == Some(id.as_str())) else {
            return Ok(Vec::new());
        };
        Ok(r.timestamps().iter().map(|t| t.secs()).zip(r.values().iter().copied()).collect())
    }

    /// Service events newer than the last ones reported, oldest first.
    pub(super) fn new_events(&self, events: &[ServiceEvent]) -> Vec<String> {
        match self.last_event.lock() {
            Ok(mut mark) => fresh_events(&mut mark, events),
            Err(_) => Vec::new(),
        }
    }
}

fn stamp(e: &ServiceEvent) -> (i64, u32) {
    e.created_at().map(|t| (t.secs(), t.subsec_nanos())).unwrap_or((0, 0))
}

/// Messages of the events after `mark`, oldest first, and moves `mark` to the newest. The first
/// call (no mark yet) only sets the mark: history from before the run is not news.
fn fresh_events(mark: &mut Option<EventMark>, events: &[ServiceEvent]) -> Vec<String> {
    let newest = events
        .iter()
        .max_by_key(|e| stamp(e))
        .map(|e| EventMark { at: stamp(e), id: e.id().unwrap_or_default().to_string() });
    let fresh = match mark.as_ref() {
        None => Vec::new(),
        Some(m) => {
            let mut fresh: Vec<&ServiceEvent> = events
                .iter()
                .filter(|e| stamp(e) > m.at || (stamp(e) == m.at && e.id().unwrap_or_default() != m.id))
                .collect();
            fresh.sort_by_key(|e| stamp(e));
            fresh.iter().filter_map(|e| e.message().map(str::to_string)).collect()
        }
    };
    match newest {
        Some(n) if mark.as_ref().is_none_or(|m| n.at >= m.at) => *mark = Some(n),
        None if mark.is_none() => *mark = Some(EventMark { at: (0, 0), id: String::new() }),
        _ => {}
    }
    fresh
}

/// The CloudWatch `LoadBalancer` dimension (`app/NAME/ID`) of a balancer given by ARN or as is.
fn lb_dimension(lb: &str) -> String {
    match lb.split_once(":loadbalancer/") {
        Some((_, rest)) => rest.to_string(),
        None => lb.to_string(),
    }
}

fn query(id: &str, namespace: &str, metric: &str, dims: &[(&str, &str)], stat: &str) -> MetricDataQuery {
    let mut m = Metric::builder().namespace(namespace).metric_name(metric);
    for (name, value) in dims {
        m = m.dimensions(Dimension::builder().name(*name).value(*value).build());
    }
    let stat = MetricStat::builder().metric(m.build()).period(PERIOD_SECS).stat(stat).build();
    MetricDataQuery::builder().id(id).metric_stat(stat).return_data(true).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarms_are_asked_for_as_metric_and_composite_alarms() {
        let config = aws_sdk_cloudwatch::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let client = aws_sdk_cloudwatch::Client::from_conf(config);
        let q = alarm_query(&client, "api-5xx");
        assert_eq!(q.get_alarm_names().as_deref(), Some(&["api-5xx".to_string()][..]));
        assert_eq!(q.get_alarm_types().as_deref(), Some(&[AlarmType::MetricAlarm, AlarmType::CompositeAlarm][..]));
    }

    #[test]
    fn registering_draining_and_unused_targets_count_as_neither() {
        let states =
            ["healthy", "healthy", "initial", "draining", "unhealthy.draining", "unused", "unhealthy", "unavailable"];
        assert_eq!(count_health(states.into_iter().map(Some)), (2, 2));
        assert_eq!(count_health([None].into_iter()), (0, 1), "a target without a state is not healthy");
    }

    fn event(id: &str, secs: i64, msg: &str) -> ServiceEvent {
        ServiceEvent::builder()
            .id(id)
            .created_at(aws_sdk_ecs::primitives::DateTime::from_secs(secs))
            .message(msg)
            .build()
    }

    #[test]
    fn only_new_service_events_are_reported_oldest_first() {
        let mut mark = None;
        // ECS lists the newest first.
        let old = vec![event("b", 20, "old 2"), event("a", 10, "old 1")];
        assert!(fresh_events(&mut mark, &old).is_empty(), "history before the run is not news");
        let mut now = vec![event("d", 40, "stopped 1 task"), event("c", 30, "has reached a steady state")];
        now.extend(old.clone());
        assert_eq!(fresh_events(&mut mark, &now), vec!["has reached a steady state", "stopped 1 task"]);
        assert!(fresh_events(&mut mark, &now).is_empty());
        assert!(fresh_events(&mut None, &[]).is_empty());
    }

    #[test]
    fn load_balancer_dimension_from_arn_or_suffix() {
        assert_eq!(
            lb_dimension(
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/prod-lb/50dc6c495c0c9188"
            ),
            "app/prod-lb/50dc6c495c0c9188"
        );
        assert_eq!(lb_dimension("app/prod-lb/123"), "app/prod-lb/123");
    }
}
