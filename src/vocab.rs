//! The words a run, its events and its report share: how a run ended ([`Outcome`]) and what a
//! person marked during it ([`Mark`]). Below the engine and the report, so that the engine's event
//! vocabulary does not depend on the report module.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::exit::Exit;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
/// How the run ended; maps one to one to the exit code.
pub enum Outcome {
    Passed,
    Failed,
    Aborted,
    PreconditionFailed,
    RevertFailed,
    Error,
}

impl Outcome {
    /// The verdict as a headline word: `PASSED`, `FAILED`…
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Passed => "PASSED",
            Outcome::Failed => "FAILED",
            Outcome::Aborted => "ABORTED",
            Outcome::PreconditionFailed => "PRECONDITION FAILED",
            Outcome::RevertFailed => "REVERT FAILED",
            Outcome::Error => "ERROR",
        }
    }

    /// The process exit status of a run that ended this way.
    pub fn exit(self) -> Exit {
        match self {
            Outcome::Passed => Exit::Passed,
            Outcome::Failed => Exit::Failed,
            Outcome::Aborted => Exit::Aborted,
            Outcome::PreconditionFailed => Exit::Precondition,
            Outcome::RevertFailed => Exit::RevertFailed,
            Outcome::Error => Exit::Internal,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
/// What a mark says.
pub enum MarkKind {
    /// The author noticed that something is wrong.
    Detected,
    /// The author considers the impact mitigated.
    Mitigated,
    /// Free text for the timeline.
    Note,
}

impl MarkKind {
    pub fn label(self) -> &'static str {
        match self {
            MarkKind::Detected => "detected",
            MarkKind::Mitigated => "mitigated",
            MarkKind::Note => "note",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
/// A mark a person added during the run.
pub struct Mark {
    /// Seconds since the load started, when the engine received the mark.
    #[serde(rename = "t_s")]
    pub t: f64,
    pub kind: MarkKind,
    /// Who marked it, e.g. `alice` or `team-blue`.
    pub author: String,
    /// What they said; may be empty for `detected` and `mitigated`.
    pub text: String,
    /// The fault the mark is about, by its name in the run (`kill-one#2` for a manual fault
    /// injected a second time): required for `detected` and `mitigated`, optional for a note.
    /// Absent in files written before marks named their fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// Its number in the run, from 1, in the order the marks came; absent (`0`) in files written
    /// before marks were numbered.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub id: u32,
    /// The fault the mark named when it was made, when the instructor moved it to another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_from: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Mark {
    /// One line for the timeline: `detected (alice) for kill-one: the error rate is up`.
    pub fn describe(&self) -> String {
        let about = self.fault.as_deref().map(|f| format!(" for {f}")).unwrap_or_default();
        match self.text.trim() {
            "" => format!("{} ({}){about}", self.kind.label(), self.author),
            said => format!("{} ({}){about}: {said}", self.kind.label(), self.author),
        }
    }
}
