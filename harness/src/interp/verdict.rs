//! A scenario's status once its steps ran: PASS, FAIL, XFAIL or XPASS, from
//! what went wrong and which steps marked `xfail` failed or passed. Pure:
//! the report maps it to its own status (see `report::ScenarioReport::settle`).

/// What a scenario's run came to, as far as its status depends on it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ran<'a> {
    /// The harness failed the scenario outside a step (it has a reason).
    pub harness_failed: bool,
    /// Something leaked.
    pub leaked: bool,
    /// A step not marked `xfail` failed.
    pub step_failed: bool,
    /// A step marked `xfail` failed as written: the reason it was given.
    pub xfail: Option<&'a str>,
    /// The steps marked `xfail` that passed: line and reason.
    pub xpassed: &'a [(usize, String)],
}

/// A scenario's status, with the reason the report shows for XFAIL and XPASS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScenarioStatus {
    /// Every step answered as expected and nothing leaked.
    Pass,
    /// A step failed, something leaked, or the harness failed.
    Fail,
    /// A marked step failed as written; nothing else went wrong.
    Xfail {
        /// `xfail: REASON`.
        reason: String,
    },
    /// A marked step passed; nothing else went wrong.
    Xpass {
        /// `XPASS: line N passed, but is marked xfail "REASON"`, for each such step.
        reason: String,
    },
}

/// The status of a scenario that ran: FAIL when the harness failed or
/// something leaked (never XFAIL then), or when a step not marked `xfail`
/// failed; else XFAIL when a marked step failed as written; else XPASS when
/// a marked step passed; else PASS.
pub(crate) fn scenario_status(ran: Ran<'_>) -> ScenarioStatus {
    if ran.harness_failed || ran.leaked {
        return ScenarioStatus::Fail;
    }
    match ran.xfail {
        Some(why) => ScenarioStatus::Xfail { reason: format!("xfail: {why}") },
        None if ran.step_failed => ScenarioStatus::Fail,
        None if !ran.xpassed.is_empty() => {
            let said: Vec<String> = ran
                .xpassed
                .iter()
                .map(|(line, why)| format!("line {line} passed, but is marked xfail \"{why}\""))
                .collect();
            ScenarioStatus::Xpass { reason: format!("XPASS: {}", said.join("; ")) }
        }
        None => ScenarioStatus::Pass,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLEAN: Ran<'static> =
        Ran { harness_failed: false, leaked: false, step_failed: false, xfail: None, xpassed: &[] };

    #[test]
    fn a_clean_run_passes_and_any_failure_fails() {
        assert_eq!(scenario_status(CLEAN), ScenarioStatus::Pass);
        assert_eq!(scenario_status(Ran { step_failed: true, ..CLEAN }), ScenarioStatus::Fail);
        assert_eq!(scenario_status(Ran { leaked: true, ..CLEAN }), ScenarioStatus::Fail);
        assert_eq!(scenario_status(Ran { harness_failed: true, ..CLEAN }), ScenarioStatus::Fail);
    }

    #[test]
    fn xfail_holds_only_when_nothing_else_went_wrong() {
        let xfail = Ran { xfail: Some("bug 12"), ..CLEAN };
        assert_eq!(scenario_status(xfail), ScenarioStatus::Xfail { reason: "xfail: bug 12".into() });
        // Leaks and harness errors are never XFAIL.
        assert_eq!(scenario_status(Ran { leaked: true, ..xfail }), ScenarioStatus::Fail);
        assert_eq!(scenario_status(Ran { harness_failed: true, ..xfail }), ScenarioStatus::Fail);
    }

    #[test]
    fn a_marked_step_that_passed_is_xpass_unless_a_step_failed() {
        let passed = [(4, "bug 12".to_string()), (9, "bug 13".to_string())];
        let xpass = Ran { xpassed: &passed, ..CLEAN };
        assert_eq!(
            scenario_status(xpass),
            ScenarioStatus::Xpass {
                reason: "XPASS: line 4 passed, but is marked xfail \"bug 12\"; \
                         line 9 passed, but is marked xfail \"bug 13\""
                    .into()
            }
        );
        assert_eq!(scenario_status(Ran { step_failed: true, ..xpass }), ScenarioStatus::Fail);
        // A marked step that failed later wins over one that passed before.
        assert!(matches!(scenario_status(Ran { xfail: Some("bug 13"), ..xpass }), ScenarioStatus::Xfail { .. }));
    }
}
