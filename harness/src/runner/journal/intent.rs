//! Intents: the line an actor appends to the journal *before* a `shmget`
//! that can create, so that a SIGKILL of every process of the run between
//! the `shmget` and the creation's [`Record`] still leaves a trace. An
//! intent never makes a segment ours (its identity was never recorded):
//! the sweep reports what such an unfinished creation may have left, and
//! removes none of it.

use serde::{Deserialize, Serialize};

use super::Record;
use crate::sysv::{Key, ProcSegment};

/// A creation about to be attempted: written before the call, so its
/// `since` is not after the new segment's `shm_ctime`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// The scenario file.
    pub scenario: String,
    /// The step's line.
    pub line: usize,
    /// The process about to create.
    pub process: String,
    /// Its pid as the host sees it ([`super::host_pid`]): the new segment's
    /// `shm_cpid`.
    pub cpid: i32,
    /// The key asked for (0: `IPC_PRIVATE`, any key then).
    pub key: i32,
    /// The IPC namespace (`/proc/thread-self/ns/ipc`): device and inode.
    pub ns: (u64, u64),
    /// Wall-clock seconds before the call ([`wall_seconds`]): the clock of
    /// `shm_ctime`.
    pub since: i64,
}

/// An intent's journal line: `{"intent": {...}}` (never parses as a
/// [`Record`] nor as the anchor's line, nor they as this).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct IntentLine {
    pub(super) intent: Intent,
}

/// Wall-clock seconds now, as the kernel stamps `shm_ctime`
/// (`CLOCK_REALTIME_COARSE`, [`crate::trace`]'s one reading of it): the
/// precise clock runs up to a tick ahead, and near a second boundary would
/// date the intent after the segment its call created.
pub fn wall_seconds() -> i64 {
    crate::trace::now_secs()
}

impl Intent {
    /// Whether `rec` is this intent's creation: the same scenario, line and
    /// creator.
    fn finished_by(&self, rec: &Record) -> bool {
        rec.cpid == self.cpid && rec.line == self.line && rec.scenario == self.scenario
    }

    /// Whether the segment `row` may be this intent's creation: made by its
    /// process, not before `since`, at its key (any key for `IPC_PRIVATE`).
    fn may_have_made(&self, row: &ProcSegment) -> bool {
        row.cpid == self.cpid && row.ctime >= self.since && (self.key == 0 || row.key.raw() == self.key)
    }
}

/// The intents of a journal's `text` that no creation record of the same
/// scenario, line and process follows.
pub(super) fn unfinished(text: &str) -> Vec<Intent> {
    let mut open: Vec<Intent> = Vec::new();
    for line in text.lines() {
        if let Ok(l) = serde_json::from_str::<IntentLine>(line) {
            open.push(l.intent);
        } else if let Ok(rec) = serde_json::from_str::<Record>(line) {
            open.retain(|i| !i.finished_by(&rec));
        }
    }
    open
}

/// Reports, through `say`, each segment of `rows` (the current IPC
/// namespace, `home`, proven by the caller) that an unfinished intent of
/// `text` may have created and that no record of `text` names: its process
/// was killed between the `shmget` and the journal write. Removes nothing:
/// its identity was never recorded. Intents of another namespace (the
/// process had moved) cannot be looked at: said. Returns how many segments
/// were reported.
pub(super) fn report_unfinished(
    text: &str,
    run: &str,
    home: (u64, u64),
    rows: &[ProcSegment],
    say: &mut impl FnMut(String),
) -> usize {
    let records: Vec<Record> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let named =
        |r: &ProcSegment| records.iter().any(|x| x.shmid == r.shmid.raw() && x.cpid == r.cpid && x.ctime == r.ctime);
    let mut reported: Vec<i32> = Vec::new();
    for intent in unfinished(text) {
        let who = format!("process {} of {}:{} ({run})", intent.process, intent.scenario, intent.line);
        if intent.ns != home {
            say(format!(
                "shm-harness: {who} was killed in a shmget that may have created a segment, in another IPC namespace (the process had moved), which cannot be looked at; whatever it made there was never recorded"
            ));
            continue;
        }
        for row in rows.iter().filter(|r| intent.may_have_made(r) && !named(r)) {
            let id = row.shmid.raw();
            if reported.contains(&id) {
                continue;
            }
            reported.push(id);
            say(unrecorded_message(&intent, &who, row));
        }
    }
    reported.len()
}

/// What the sweep says of a segment an unfinished intent may have made.
fn unrecorded_message(intent: &Intent, who: &str, row: &ProcSegment) -> String {
    let id = row.shmid.raw();
    format!(
        "shm-harness: shmid {id} (key {}, cpid {}, created at {}): {who} was killed between its shmget and its journal write, so its identity was never recorded; left alone (pid {} may have been reused): ipcrm -m {id} if it is yours",
        Key::from_raw(row.key.raw()),
        row.cpid,
        utc(row.ctime),
        intent.cpid
    )
}

/// `secs` since the epoch as `YYYY-MM-DD hh:mm:ss UTC` (the proleptic
/// Gregorian calendar, days to civil date).
fn utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(line: usize, cpid: i32) -> String {
        let i = Intent { scenario: "s.scn".into(), line, process: "A".into(), cpid, key: 0, ns: (1, 2), since: 100 };
        serde_json::to_string(&IntentLine { intent: i }).unwrap()
    }

    fn record(line: usize, cpid: i32) -> String {
        let r = Record {
            scenario: "s.scn".into(),
            line,
            process: "A".into(),
            shmid: 1,
            cpid,
            ctime: 100,
            key: 0,
            ns: (1, 2),
        };
        serde_json::to_string(&r).unwrap()
    }

    #[test]
    fn an_intent_is_finished_only_by_a_later_record_of_its_line_and_process() {
        let anchor = r#"{"anchor":{"shmid":0,"cpid":1,"ctime":1,"key":5,"ns":[1,2]}}"#;
        // Finished; another process's record; a record before the intent.
        let text = [anchor, &intent(3, 10), &record(3, 10), &intent(4, 10), &record(4, 11), &record(5, 10)];
        let mut text = text.join("\n");
        text.push('\n');
        text.push_str(&intent(5, 10));
        let open: Vec<(usize, i32)> = unfinished(&text).iter().map(|i| (i.line, i.cpid)).collect();
        assert_eq!(open, vec![(4, 10), (5, 10)]);
        // Lines of either kind never parse as the other.
        assert!(serde_json::from_str::<Record>(&intent(3, 10)).is_err());
        assert!(serde_json::from_str::<IntentLine>(&record(3, 10)).is_err());
    }

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_692_519), "2026-12-08 01:15:19 UTC");
    }
}
