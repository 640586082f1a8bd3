//! `--logfile FILE`: the whole build log — dibr's own lines and every
//! hook's output — appended to FILE as timestamped lines, the format of
//! DIB's `diskimage_builder/lib/outfilter.py` (`YYYY-MM-DD HH:MM:SS.mmm |
//! line`, UTC). As in `disk-image-create`, a logfile implies `DIB_QUIET=1`
//! (nothing on the terminal) unless `DIB_QUIET=0` asks for both.
//!
//! Standard output and error are pointed at a pipe for the length of the
//! build, so child processes (the sandbox, hooks) write into it too; a
//! thread copies the pipe to the file and, unless quiet, to the terminal.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The redirection; dropping it puts the terminal back and waits
/// (briefly) for the last lines to reach the file.
pub struct Tee {
    saved_out: OwnedFd,
    saved_err: OwnedFd,
    copier: Option<JoinHandle<()>>,
    file: Arc<Mutex<File>>,
}

/// `DIB_QUIET` as disk-image-create reads it with a logfile: unset means
/// quiet; `0` means the terminal too.
pub fn quiet_from(dib_quiet: Option<&str>) -> bool {
    !matches!(dib_quiet.map(str::trim), Some("0"))
}

/// outfilter.py's timestamp: UTC, milliseconds.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (y, m, day) = crate::units::civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        s / 3600,
        (s / 60) % 60,
        s % 60,
        d.subsec_millis()
    )
}

impl Tee {
    /// Start copying standard output and error to `path` (appended).
    pub fn start(path: &Path, quiet: bool) -> Result<Tee, String> {
        let fail =
            |what: &str, e: std::io::Error| format!("--logfile {}: {what}: {e}", path.display());
        let file = File::options()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| fail("opening", e))?;
        eprintln!("Output logs going to: {}", path.display());
        // Close-on-exec: children get the write end as their standard
        // output and error (dup2 clears the flag there), never the read end.
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| fail("making a pipe", e.into()))?;
        let out = std::io::stdout();
        let err = std::io::stderr();
        let _ = out.lock().flush();
        let saved_out = rustix::io::dup(out.as_fd()).map_err(|e| fail("dup", e.into()))?;
        let saved_err = rustix::io::dup(err.as_fd()).map_err(|e| fail("dup", e.into()))?;
        let terminal = File::from(rustix::io::dup(&saved_err).map_err(|e| fail("dup", e.into()))?);
        rustix::stdio::dup2_stdout(&w).map_err(|e| fail("redirecting stdout", e.into()))?;
        rustix::stdio::dup2_stderr(&w).map_err(|e| fail("redirecting stderr", e.into()))?;
        drop(w);
        let file = Arc::new(Mutex::new(file));
        let log = Arc::clone(&file);
        let copier = std::thread::spawn(move || {
            let mut terminal = (!quiet).then_some(terminal);
            let mut lines = BufReader::new(File::from(r));
            let mut line = Vec::new();
            while matches!(lines.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                if !line.ends_with(b"\n") {
                    line.push(b'\n');
                }
                let mut ts = format!("{} | ", timestamp(SystemTime::now())).into_bytes();
                ts.extend_from_slice(&line);
                if let Ok(mut f) = log.lock() {
                    let _ = f.write_all(&ts);
                }
                if let Some(t) = terminal.as_mut() {
                    let _ = t.write_all(&line);
                }
                line.clear();
            }
        });
        Ok(Tee {
            saved_out,
            saved_err,
            copier: Some(copier),
            file,
        })
    }

    /// Put the terminal back, let the last lines reach the file, then add
    /// `last` (the error the build ends with, which dibr prints on the
    /// terminal once the redirection is gone).
    pub fn finish(mut self, last: Option<String>) {
        self.restore();
        if let (Some(l), Ok(mut f)) = (last, self.file.lock()) {
            let _ = writeln!(f, "{} | {l}", timestamp(SystemTime::now()));
        }
    }

    fn restore(&mut self) {
        let _ = std::io::stdout().lock().flush();
        let _ = rustix::stdio::dup2_stdout(&self.saved_out);
        let _ = rustix::stdio::dup2_stderr(&self.saved_err);
        // The pipe ends when the last writer closes it; a daemon a hook
        // left behind could hold it open, so do not wait for ever.
        if let Some(h) = self.copier.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        self.restore();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outfilter_timestamps_and_quiet() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(timestamp(t), "2023-11-14 22:13:20.123");
        assert!(quiet_from(None));
        assert!(quiet_from(Some("1")));
        assert!(!quiet_from(Some("0")));
    }
}
