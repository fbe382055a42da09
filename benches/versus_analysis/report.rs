//! What one system did in one row, and the markdown table the bench prints. Start and decision
//! times are the systems' own timestamps; the phases between are as polled, once a second.

use k8s_openapi::jiff::Timestamp;

/// One look at a system: where its decision stands and where its Rollout stands.
pub struct Look {
    /// When it started judging the canary: the AnalysisRun's `startedAt`; the pause's start, as
    /// the gate recorded it.
    pub started_at: Option<Timestamp>,
    /// When it decided: the AnalysisRun's `completedAt`; the gate record's `since` once promoted
    /// or aborted.
    pub decided_at: Option<Timestamp>,
    /// The AnalysisRun's phase, or the gate's record's phase.
    pub phase: String,
    /// Its message, and for Argo the measurements.
    pub message: String,
    /// The Rollout's step, phase and message; none when it could not be read this time.
    pub rollout: Option<String>,
}

/// Everything seen of one system in one row.
#[derive(Default)]
pub struct Track {
    start: Option<Timestamp>,
    /// (seconds since the start, phase) at each change of phase.
    pub timeline: Vec<(f64, String)>,
    pub message: String,
    pub decided_after: Option<f64>,
    /// Seconds since the start at the last look.
    watched: Option<f64>,
    pub rollout: String,
}

impl Track {
    /// Seconds since this system started judging, if it has.
    pub fn elapsed(&self) -> Option<f64> {
        self.since_start(Timestamp::now())
    }

    fn since_start(&self, at: Timestamp) -> Option<f64> {
        let start = self.start?;
        Some(at.duration_since(start).as_secs_f64())
    }

    pub fn decided(&self) -> bool {
        self.decided_after.is_some()
    }

    pub fn record(&mut self, look: Look) {
        if self.start.is_none() {
            self.start = look.started_at;
        }
        if let Some(rollout) = look.rollout {
            self.rollout = rollout;
        }
        self.watched = self.elapsed();
        if look.started_at.is_none() && look.decided_at.is_none() {
            return; // no record to read (yet, or for a moment): nothing to add
        }
        let Some(now) = self.elapsed() else {
            return;
        };
        if self.decided() {
            return; // the decision's own message stands; only the Rollout moves on
        }
        let decided = look.decided_at.and_then(|at| self.since_start(at));
        if self.timeline.last().map(|(_, p)| p) != Some(&look.phase) {
            self.timeline.push((decided.unwrap_or(now), look.phase));
        }
        self.message = look.message;
        self.decided_after = decided;
    }

    /// The phases in order with when each began: `Running 0s → Error 41s`.
    fn phases(&self) -> String {
        self.timeline
            .iter()
            .map(|(t, p)| format!("{p} {t:.0}s"))
            .collect::<Vec<_>>()
            .join(" → ")
    }

    /// One table cell: the phases, the message and the Rollout.
    pub fn cell(&self) -> String {
        format!(
            "**{}**: {} (Rollout: {})",
            self.phases(),
            clip(&self.message, 260),
            clip(&self.rollout, 110)
        )
    }

    /// The time to decision, or how long it went without one.
    pub fn time(&self) -> String {
        match (self.decided_after, self.watched) {
            (Some(t), _) => format!("{t:.0} s"),
            (None, Some(t)) => format!("none in {t:.0} s"),
            (None, None) => "never started".into(),
        }
    }
}

/// One row of the table.
pub struct RowResult {
    pub title: String,
    pub canary: String,
    pub argo: Track,
    pub tollgate: Track,
}

pub fn table(rows: &[RowResult]) -> String {
    let mut out = String::from(
        "| failure mode | canary traffic | Argo analysis: AnalysisRun → Rollout | Argo: time to decision | tollgate: gate → Rollout | tollgate: time to decision |\n\
         |---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            escape(&r.title),
            escape(&r.canary),
            escape(&r.argo.cell()),
            r.argo.time(),
            escape(&r.tollgate.cell()),
            r.tollgate.time()
        ));
    }
    out
}

fn clip(text: &str, max: usize) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() <= max {
        return text;
    }
    let cut: String = text.chars().take(max).collect();
    format!("{cut}…")
}

/// Safe inside a markdown table cell.
fn escape(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}
