//! The live progress display: the bar, the line beside it, and the speed
//! and ETA it shows, measured here over a sliding window of bytes sent.
//!
//! Bytes *sent* move with every chunk written to the socket, so the bar
//! moves while a 32 MiB part is on the wire; bytes *acknowledged* (what
//! the server confirmed, the only thing a resume can count on) are shown
//! beside it. Not an API (see the crate's docs).

use std::collections::VecDeque;
use std::time::Duration;

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

use batchput::Progress;

use crate::ui::{human_bytes, human_duration, human_rate, Direction};

/// The live progress line on a terminal: one bar of bytes sent, with the
/// bytes acknowledged beside it, speed, ETA and files done. Hidden when
/// not drawing to a terminal.
pub struct Display {
    bar: ProgressBar,
    direction: Direction,
}

impl Display {
    /// A display for a job of `bytes_total` bytes moving `direction`. It
    /// draws on stderr, and only when `enabled` and both stdout and stderr
    /// are terminals: with the output piped or redirected, nothing but the
    /// final report shows.
    pub fn new(enabled: bool, bytes_total: u64, direction: Direction) -> Display {
        let live = enabled && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        let bar = if live {
            let bar = ProgressBar::with_draw_target(
                Some(bytes_total),
                ProgressDrawTarget::term_like_with_hz(
                    Box::new(Narrowed(console::Term::stderr())),
                    10,
                ),
            );
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed:>4} {wide_bar} {msg}")
                    .expect("a valid progress template")
                    .progress_chars("=> "),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        // Log lines go above the bar while it is drawn, not through it.
        crate::logger::draw_above(&bar);
        Display { bar, direction }
    }

    /// Which way the job it shows moves bytes.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Whether the bar is drawn.
    pub fn is_live(&self) -> bool {
        !self.bar.is_hidden()
    }

    /// Redraws from a snapshot and the speed measured so far.
    pub fn update(&self, p: &Progress, rate: &Rate) {
        if self.bar.is_hidden() {
            return;
        }
        self.bar.set_length(p.bytes_total);
        self.bar.set_position(p.bytes_sent);
        self.bar.set_message(progress_line(p, rate, self.direction));
        // The spinner turns while big parts are in flight and no byte is
        // acknowledged yet: alive, not stuck.
        self.bar.tick();
    }

    /// A line above the bar (or on stderr when there is no bar).
    pub fn note(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            // Not `println`: it pads the line to the width the bar was
            // told, which `Narrowed` shortens, and the bar would follow on
            // the same line.
            self.bar.suspend(|| eprintln!("{line}"));
        }
    }

    /// Removes the bar, leaving the terminal for the report.
    pub fn finish(&self) {
        crate::logger::no_bar();
        self.bar.finish_and_clear();
    }
}

/// Standard error, reported a few columns narrower than it is. A bar that
/// filled the last column would leave the cursor there, and the `^C` the
/// terminal echoes on Ctrl-C would wrap to a new line, stranding a stale
/// bar above the report; with the margin the echo stays on the bar's line,
/// which the next redraw clears.
#[derive(Debug)]
struct Narrowed(console::Term);

impl TermLike for Narrowed {
    fn width(&self) -> u16 {
        self.0.size().1.saturating_sub(3).max(20)
    }
    fn height(&self) -> u16 {
        self.0.size().0
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_up(n)
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_down(n)
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_right(n)
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_left(n)
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.0.write_line(s)
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.0.write_str(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.0.clear_line()
    }
    fn flush(&self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Speed and ETA from samples of bytes sent, over a sliding window.
///
/// The first second after the first byte is left out once later samples
/// exist: that is when the socket buffers fill at memory speed, and
/// counting it would promise a speed the link never had. The speed is the
/// least-squares slope of the samples in the window (the last
/// [`Rate::WINDOW`]), so one late acknowledgement or a retried part's
/// rollback moves it a little, not to zero or to the moon.
#[derive(Debug, Clone, Default)]
pub struct Rate {
    samples: VecDeque<(f64, f64)>,
    /// When the first byte was seen, seconds since the job started.
    first_byte: Option<f64>,
    peak: f64,
}

impl Rate {
    /// How far back the speed looks.
    pub const WINDOW: Duration = Duration::from_secs(5);
    /// The burst at the start that is left out.
    pub const WARM_UP: Duration = Duration::from_secs(1);
    /// The shortest span of samples that gives a speed.
    pub const MIN_SPAN: Duration = Duration::from_secs(1);

    /// An estimator with no samples.
    pub fn new() -> Rate {
        Rate::default()
    }

    /// Records that `sent` bytes had been sent at `at` since the job started.
    pub fn add(&mut self, at: Duration, sent: u64) {
        let t = at.as_secs_f64();
        if self.first_byte.is_none() {
            if sent == 0 {
                return;
            }
            self.first_byte = Some(t);
        }
        let warm = self.first_byte.unwrap_or(t) + Rate::WARM_UP.as_secs_f64();
        let from = (t - Rate::WINDOW.as_secs_f64()).max(warm);
        self.samples.push_back((t, sent as f64));
        // Keep the samples in the window, and the one just before it while
        // the window is still warming up (so there is a span to measure).
        while self.samples.len() > 2 && self.samples[1].0 <= from {
            self.samples.pop_front();
        }
        if let Some(s) = self.speed() {
            self.peak = self.peak.max(s);
        }
    }

    /// Bytes per second, once the samples span [`Rate::MIN_SPAN`].
    pub fn speed(&self) -> Option<f64> {
        let (first, last) = (self.samples.front()?, self.samples.back()?);
        if last.0 - first.0 < Rate::MIN_SPAN.as_secs_f64() {
            return None;
        }
        let n = self.samples.len() as f64;
        let (mt, mb) = self
            .samples
            .iter()
            .fold((0.0, 0.0), |(t, b), s| (t + s.0 / n, b + s.1 / n));
        let (mut num, mut den) = (0.0, 0.0);
        for (t, b) in &self.samples {
            num += (t - mt) * (b - mb);
            den += (t - mt) * (t - mt);
        }
        (den > 0.0).then(|| (num / den).max(0.0))
    }

    /// The highest speed measured so far.
    pub fn peak(&self) -> Option<f64> {
        (self.peak > 0.0).then_some(self.peak)
    }

    /// The time `remaining` bytes take at the current speed.
    pub fn eta(&self, remaining: u64) -> Option<Duration> {
        let speed = self.speed().filter(|s| *s >= 1.0)?;
        Some(Duration::from_secs_f64(remaining as f64 / speed))
    }
}

/// The text beside the bar, e.g.
/// `" 45%  58.0 MiB/128.0 MiB (41.0 MiB acknowledged)  41.2 MiB/s  ETA 2s  files 120/304"`;
/// once every byte is sent and uploads are completing,
/// `"100%  128.0 MiB/128.0 MiB  completing 3 uploads  files 301/304"`.
/// A download says `written` for bytes in finished parts and `finishing
/// 3 downloads` while its files are checked, synced and renamed.
pub fn progress_line(p: &Progress, rate: &Rate, direction: Direction) -> String {
    let pct = if p.bytes_total == 0 {
        if p.files_done == p.files_total {
            100
        } else {
            0
        }
    } else {
        (p.bytes_sent.min(p.bytes_total) as u128 * 100 / p.bytes_total as u128) as u64
    };
    let files = format!("files {}/{}", p.files_done, p.files_total);
    let sent = format!(
        "{}/{}",
        human_bytes(p.bytes_sent),
        human_bytes(p.bytes_total)
    );
    let unfinished = p.files_total - p.files_done.min(p.files_total);
    if p.bytes_sent >= p.bytes_total && p.bytes_done >= p.bytes_total && unfinished > 0 {
        // Every byte is on the server; the uploads are being completed
        // (CompleteMultipartUpload can take seconds for a big object).
        let (doing, what) = match direction {
            Direction::Upload => ("completing", "upload"),
            Direction::Download => ("finishing", "download"),
        };
        return format!(
            "{pct:>3}%  {sent}  {doing} {unfinished} {what}{}  {files}",
            if unfinished == 1 { "" } else { "s" }
        );
    }
    let acked = if p.bytes_done < p.bytes_sent {
        let word = match direction {
            Direction::Upload => "acknowledged",
            Direction::Download => "in finished parts",
        };
        format!(" ({} {word})", human_bytes(p.bytes_done))
    } else {
        String::new()
    };
    let (speed, eta) = match rate.speed() {
        Some(s) => (
            human_rate(s),
            match rate.eta(p.bytes_total.saturating_sub(p.bytes_sent)) {
                Some(d) if d < Duration::from_secs(60) => {
                    format!("ETA {}s", d.as_secs_f64().ceil())
                }
                Some(d) => format!("ETA {}", human_duration(d)),
                None => "ETA -".into(),
            },
        ),
        None => ("- B/s".into(), "ETA -".into()),
    };
    format!("{pct:>3}%  {sent}{acked}  {speed}  {eta}  {files}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: f64 = 1048576.0;

    /// Feeds `rate` samples every 100 ms from `from` to `to` seconds of
    /// bytes sent given by `sent(t)`.
    fn feed(rate: &mut Rate, from: f64, to: f64, sent: impl Fn(f64) -> f64) {
        let mut t = from;
        while t <= to + 1e-9 {
            rate.add(Duration::from_secs_f64(t), sent(t) as u64);
            t += 0.1;
        }
    }

    #[test]
    fn a_steady_upload_reads_right_after_three_seconds() {
        // 4 MiB/s, after 8 MiB went into the socket buffers at once.
        let sent = |t: f64| {
            if t < 0.05 {
                0.0
            } else {
                8.0 * MIB + 4.0 * MIB * t
            }
        };
        let mut rate = Rate::new();
        feed(&mut rate, 0.0, 0.9, sent);
        assert_eq!(rate.speed(), None, "no speed before a second of samples");
        feed(&mut rate, 1.0, 3.0, sent);
        let s = rate.speed().unwrap();
        assert!((s / (4.0 * MIB) - 1.0).abs() < 0.2, "{} MiB/s", s / MIB);
        // 100 MiB to go at 4 MiB/s: 25 s.
        let eta = rate.eta(100 << 20).unwrap().as_secs_f64();
        assert!((eta / 25.0 - 1.0).abs() < 0.2, "ETA {eta} s");
        // Steady for a while: exact, whatever the start was.
        feed(&mut rate, 3.1, 20.0, sent);
        let s = rate.speed().unwrap();
        assert!((s / (4.0 * MIB) - 1.0).abs() < 0.01, "{} MiB/s", s / MIB);
    }

    #[test]
    fn the_speed_follows_a_change_within_the_window() {
        let mut rate = Rate::new();
        feed(&mut rate, 0.0, 10.0, |t| 10.0 * MIB * t);
        feed(&mut rate, 10.1, 16.0, |t| {
            100.0 * MIB + 2.0 * MIB * (t - 10.0)
        });
        let s = rate.speed().unwrap();
        assert!((s / (2.0 * MIB) - 1.0).abs() < 0.2, "{} MiB/s", s / MIB);
        assert!(rate.peak().unwrap() > 9.0 * MIB);
    }

    #[test]
    fn a_rolled_back_part_never_makes_the_speed_negative() {
        let mut rate = Rate::new();
        feed(&mut rate, 0.0, 2.0, |t| 5.0 * MIB * t);
        feed(&mut rate, 2.1, 3.5, |_| 0.0);
        assert!(rate.speed().unwrap() >= 0.0);
    }

    fn snapshot(sent: u64, done: u64, files_done: u64) -> Progress {
        Progress {
            state: batchput::JobState::Running,
            files_total: 304,
            files_done,
            files_failed: 0,
            parts_total: 0,
            parts_done: 0,
            bytes_total: 128 << 20,
            bytes_done: done,
            bytes_sent: sent,
            bytes_resumed: 0,
            speed_bps: 0.0,
            avg_speed_bps: 0.0,
            peak_speed_bps: 0.0,
            elapsed: Duration::ZERO,
            error: None,
            integrity_used: None,
        }
    }

    #[test]
    fn the_line_shows_sent_then_acknowledged_then_completing() {
        let mut rate = Rate::new();
        feed(&mut rate, 0.0, 3.0, |t| 8.0 * MIB * t);
        assert_eq!(
            progress_line(&snapshot(24 << 20, 16 << 20, 120), &rate, Direction::Upload),
            " 18%  24.0 MiB/128.0 MiB (16.0 MiB acknowledged)  8.0 MiB/s  ETA 13s  files 120/304"
        );
        assert_eq!(
            progress_line(
                &snapshot(128 << 20, 128 << 20, 301),
                &rate,
                Direction::Upload
            ),
            "100%  128.0 MiB/128.0 MiB  completing 3 uploads  files 301/304"
        );
        assert_eq!(
            progress_line(&snapshot(1 << 20, 0, 0), &Rate::new(), Direction::Upload),
            "  0%  1.0 MiB/128.0 MiB (0 B acknowledged)  - B/s  ETA -  files 0/304"
        );
        // A download's words: bytes in finished parts, files being finished.
        assert_eq!(
            progress_line(&snapshot(24 << 20, 16 << 20, 120), &rate, Direction::Download),
            " 18%  24.0 MiB/128.0 MiB (16.0 MiB in finished parts)  8.0 MiB/s  ETA 13s  files 120/304"
        );
        assert_eq!(
            progress_line(
                &snapshot(128 << 20, 128 << 20, 301),
                &rate,
                Direction::Download
            ),
            "100%  128.0 MiB/128.0 MiB  finishing 3 downloads  files 301/304"
        );
    }
}
