//! Progress output for `up`: one spinner line per service on a terminal (indicatif),
//! plain `service: step` lines otherwise, so logs and CI output stay readable. Anything
//! else printed while the lines are drawn goes through [`Progress::note`] or
//! [`Progress::println`], and [`Progress::finish`] (or dropping it) ends the drawing on a
//! line of its own, so later output never lands on a progress line.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bars: Option<(MultiProgress, Mutex<Bars>)>,
    /// Print every build line (`-v`), not just the latest.
    pub verbose: bool,
    quiet: bool,
    /// Writes a newline where the bars are drawn.
    newline: Box<dyn Fn() + Send + Sync>,
}

#[derive(Default)]
struct Bars {
    by_key: BTreeMap<String, ProgressBar>,
    /// The drawing has ended: what follows is printed as plain lines.
    finished: bool,
}

impl Progress {
    /// Spinners when stderr is a terminal, lines otherwise.
    pub fn new(verbose: bool) -> Self {
        let tty = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        Self {
            bars: tty.then(|| {
                (
                    MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                    Mutex::new(Bars::default()),
                )
            }),
            verbose,
            quiet: false,
            newline: Box::new(|| eprintln!()),
        }
    }

    /// Spinners drawn on `target` whatever it is (for tests of the drawing).
    #[cfg(test)]
    fn drawn_on(target: ProgressDrawTarget, newline: Box<dyn Fn() + Send + Sync>) -> Self {
        Self {
            bars: Some((
                MultiProgress::with_draw_target(target),
                Mutex::new(Bars::default()),
            )),
            verbose: false,
            quiet: false,
            newline,
        }
    }

    /// No output at all (for callers that report themselves).
    pub fn quiet() -> Self {
        Self {
            bars: None,
            verbose: false,
            quiet: true,
            newline: Box::new(|| {}),
        }
    }

    fn bar(&self, key: &str) -> Option<ProgressBar> {
        let (multi, bars) = self.bars.as_ref()?;
        let mut bars = bars.lock().unwrap();
        if bars.finished {
            return None;
        }
        Some(
            bars.by_key
                .entry(key.to_owned())
                .or_insert_with(|| {
                    let b = multi.add(ProgressBar::new_spinner());
                    b.set_style(
                        ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg}")
                            .expect("static template"),
                    );
                    b.set_prefix(key.to_owned());
                    b.enable_steady_tick(Duration::from_millis(100));
                    b
                })
                .clone(),
        )
    }

    /// A step for one item (service, image, network).
    pub fn step(&self, key: &str, msg: &str) {
        if self.quiet {
            return;
        }
        match self.bar(key) {
            Some(b) => b.set_message(msg.to_owned()),
            None => eprintln!("{key}: {msg}"),
        }
    }

    /// A line of build output: the spinner shows the latest; `-v` prints them all.
    pub fn detail(&self, key: &str, line: &str) {
        if self.quiet {
            return;
        }
        if self.verbose {
            self.println(&format!("{key} | {line}"));
        } else if let Some(b) = self.bar(key) {
            b.set_message(line.to_owned());
        }
    }

    /// The item is done; its line stays with `msg`.
    pub fn done(&self, key: &str, msg: &str) {
        if self.quiet {
            return;
        }
        match self.bar(key) {
            Some(b) => {
                b.set_style(
                    ProgressStyle::with_template("  {prefix:.bold} {wide_msg}")
                        .expect("static template"),
                );
                b.finish_with_message(msg.to_owned());
            }
            None => eprintln!("{key}: {msg}"),
        }
    }

    /// A line above the bars while they are drawn; a plain line otherwise.
    pub fn println(&self, line: &str) {
        if self.quiet {
            return;
        }
        if let Some((m, bars)) = &self.bars {
            // Held while printing, so `finish` cannot end the drawing in between.
            let bars = bars.lock().unwrap();
            if !bars.finished {
                let _ = m.println(line);
                return;
            }
        }
        eprintln!("{line}");
    }

    /// `note: TEXT`, never on a progress line.
    pub fn note(&self, text: &str) {
        self.println(&format!("note: {text}"));
    }

    /// Ends the drawing: a line still spinning stops where it is, and the cursor moves to
    /// a line of its own (indicatif leaves it at the end of the last line it drew). What
    /// is printed afterwards, through this or not, starts on that line.
    pub fn finish(&self) {
        let Some((_, bars)) = &self.bars else {
            return;
        };
        let mut bars = bars.lock().unwrap();
        if bars.finished {
            return;
        }
        bars.finished = true;
        if bars.by_key.is_empty() {
            return;
        }
        for b in bars.by_key.values() {
            if !b.is_finished() {
                b.abandon();
            }
        }
        // Every bar is finished, so nothing draws any more: the newline comes last.
        (self.newline)();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use indicatif::{ProgressDrawTarget, TermLike};

    use super::Progress;

    /// A terminal that does not wrap (as a log of it reads): rows of text and a cursor.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<Grid>>);

    #[derive(Debug, Default)]
    struct Grid {
        rows: Vec<Vec<char>>,
        row: usize,
        col: usize,
    }

    impl Screen {
        fn push(&self, s: &str) {
            let mut g = self.0.lock().unwrap();
            for c in s.chars() {
                match c {
                    '\n' => {
                        g.row += 1;
                        g.col = 0;
                    }
                    '\r' => g.col = 0,
                    c => {
                        let (row, col) = (g.row, g.col);
                        if g.rows.len() <= row {
                            g.rows.resize(row + 1, Vec::new());
                        }
                        let line = &mut g.rows[row];
                        if line.len() <= col {
                            line.resize(col + 1, ' ');
                        }
                        line[col] = c;
                        g.col += 1;
                    }
                }
            }
        }

        fn cursor(&self, f: impl FnOnce(&mut Grid)) -> std::io::Result<()> {
            f(&mut self.0.lock().unwrap());
            Ok(())
        }

        fn lines(&self) -> Vec<String> {
            let g = self.0.lock().unwrap();
            g.rows
                .iter()
                .map(|r| r.iter().collect::<String>().trim_end().to_owned())
                .collect()
        }
    }

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            40
        }
        fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
            self.cursor(|g| g.row = g.row.saturating_sub(n))
        }
        fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
            self.cursor(|g| g.row += n)
        }
        fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
            self.cursor(|g| g.col += n)
        }
        fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
            self.cursor(|g| g.col = g.col.saturating_sub(n))
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.push(s);
            self.push("\n");
            Ok(())
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.push(s);
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            self.cursor(|g| {
                if let Some(r) = g.rows.get_mut(g.row) {
                    r.clear();
                }
                g.col = 0;
            })
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn drawn() -> (Progress, Screen) {
        let screen = Screen::default();
        let end = screen.clone();
        let ui = Progress::drawn_on(
            ProgressDrawTarget::term_like(Box::new(screen.clone())),
            Box::new(move || end.push("\n")),
        );
        (ui, screen)
    }

    // A note printed after `up` finished its lines came out at the end of the last one:
    // indicatif leaves the cursor there.
    #[test]
    fn what_follows_the_finished_lines_starts_on_a_line_of_its_own() {
        let (ui, screen) = drawn();
        ui.step("web", "starting");
        ui.done("web", "created (running)");
        ui.finish();
        screen.push("note: after\n");
        let lines = screen.lines();
        assert_eq!(lines.last().unwrap(), "note: after", "{lines:?}");
        assert!(
            lines.contains(&"  web created (running)".to_owned()),
            "{lines:?}"
        );
    }

    #[test]
    fn a_note_while_the_lines_are_drawn_is_a_line_of_its_own() {
        let (ui, screen) = drawn();
        ui.step("web", "starting");
        ui.note("in between");
        ui.done("web", "created (running)");
        drop(ui);
        screen.push("summary\n");
        let lines = screen.lines();
        assert!(lines.contains(&"note: in between".to_owned()), "{lines:?}");
        assert_eq!(lines.last().unwrap(), "summary", "{lines:?}");
    }

    #[test]
    fn a_line_still_spinning_stops_and_ends_its_line() {
        let (ui, screen) = drawn();
        ui.step("web", "waiting for healthy");
        drop(ui);
        screen.push("error: it failed\n");
        let lines = screen.lines();
        assert_eq!(lines.last().unwrap(), "error: it failed", "{lines:?}");
    }

    #[test]
    fn nothing_drawn_nothing_added() {
        let (ui, screen) = drawn();
        ui.finish();
        assert!(screen.lines().is_empty(), "{:?}", screen.lines());
    }
}
