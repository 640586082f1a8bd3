//! Progress for long phases: a live bar (indicatif) when stderr is a
//! terminal, plain timestamped lines otherwise (CI logs), so both a person
//! watching and a log reader can tell where time went.

use std::io::IsTerminal;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (civil-from-days, proleptic Gregorian).
pub fn utc_stamp(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn now_stamp() -> String {
    let s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    utc_stamp(s)
}

/// Wall time per named step of a command, for the one line it ends with
/// (`dibr assemble: times: tree 3.10s, …, total 30.12s`): where the time
/// went, without a profiler, like mkfs's per-phase lines.
pub struct Laps {
    start: Instant,
    last: Instant,
    laps: Vec<(String, Duration)>,
}

impl Laps {
    pub fn start() -> Laps {
        let now = Instant::now();
        Laps {
            start: now,
            last: now,
            laps: Vec::new(),
        }
    }

    /// Ends the step `name` (the time since the previous lap).
    pub fn lap(&mut self, name: impl Into<String>) {
        let now = Instant::now();
        self.laps.push((name.into(), now - self.last));
        self.last = now;
    }

    /// `name 1.23s, …, total 4.56s`.
    pub fn line(&self) -> String {
        let mut parts: Vec<String> = self
            .laps
            .iter()
            .map(|(n, d)| format!("{n} {:.2}s", d.as_secs_f64()))
            .collect();
        parts.push(format!("total {:.2}s", self.start.elapsed().as_secs_f64()));
        parts.join(", ")
    }
}

/// One phase of work: announced when it starts, timed when it ends.
pub struct Phase {
    name: String,
    started: Instant,
    bar: Option<ProgressBar>,
    /// Without a terminal: the total, and the last quarter reported (a
    /// log gets four lines, not a bar's redraws).
    total: std::sync::atomic::AtomicU64,
    quarter: std::sync::atomic::AtomicU64,
}

impl Phase {
    /// Start a phase; `total_bytes` gives a bar with a known end.
    pub fn start(name: &str, total_bytes: Option<u64>) -> Phase {
        let bar = if std::io::stderr().is_terminal() {
            let b = match total_bytes {
                Some(t) => ProgressBar::new(t).with_style(
                    ProgressStyle::with_template(
                        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                ),
                None => ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                ),
            };
            b.set_message(name.to_string());
            b.enable_steady_tick(std::time::Duration::from_millis(120));
            Some(b)
        } else {
            crate::console::say(&format!("[{}] {name} ...", now_stamp()));
            None
        };
        Phase {
            name: name.to_string(),
            started: Instant::now(),
            bar,
            total: total_bytes.unwrap_or(0).into(),
            quarter: 0.into(),
        }
    }

    /// The total, once known (a bar gets its end).
    pub fn set_total(&self, total: u64) {
        self.total
            .store(total, std::sync::atomic::Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.set_length(total);
            b.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
        }
    }

    /// Bytes processed so far (cheap: the bar redraws on its own tick;
    /// without a terminal a line at each quarter, with the rate).
    pub fn set_bytes(&self, n: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(b) = &self.bar {
            b.set_position(n);
            return;
        }
        let total = self.total.load(Relaxed);
        if total == 0 {
            return;
        }
        let q = (n.min(total) * 4 / total).min(3);
        if q > self.quarter.load(Relaxed) {
            self.quarter.store(q, Relaxed);
            let secs = self.started.elapsed().as_secs_f64().max(0.001);
            crate::console::say(&format!(
                "[{}] {}: {}% ({} of {}, {}/s)",
                now_stamp(),
                self.name,
                q * 25,
                crate::units::human(n),
                crate::units::human(total),
                crate::units::human((n as f64 / secs) as u64)
            ));
        }
    }

    /// End the phase with a timing line.
    pub fn done(self) {
        let secs = self.started.elapsed().as_secs_f64();
        match &self.bar {
            Some(b) => {
                b.finish_and_clear();
                crate::console::say(&format!("{} done in {secs:.2}s", self.name));
            }
            None => crate::console::say(&format!(
                "[{}] {} done in {secs:.2}s",
                now_stamp(),
                self.name
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::utc_stamp;

    #[test]
    fn stamps() {
        assert_eq!(utc_stamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_stamp(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc_stamp(-157_766_400), "1965-01-01T00:00:00Z");
        assert_eq!(utc_stamp(4_102_444_800), "2100-01-01T00:00:00Z");
    }
}
