//! Progress output for `up`: one spinner line per service on a terminal (indicatif),
//! plain `service: step` lines otherwise, so logs and CI output stay readable.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bars: Option<(MultiProgress, Mutex<BTreeMap<String, ProgressBar>>)>,
    /// Print every build line (`-v`), not just the latest.
    pub verbose: bool,
    quiet: bool,
}

impl Progress {
    /// Spinners when stderr is a terminal, lines otherwise.
    pub fn new(verbose: bool) -> Self {
        let tty = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        Self {
            bars: tty.then(|| {
                (
                    MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                    Mutex::new(BTreeMap::new()),
                )
            }),
            verbose,
            quiet: false,
        }
    }

    /// No output at all (for callers that report themselves).
    pub fn quiet() -> Self {
        Self {
            bars: None,
            verbose: false,
            quiet: true,
        }
    }

    fn bar(&self, key: &str) -> Option<ProgressBar> {
        let (multi, bars) = self.bars.as_ref()?;
        let mut bars = bars.lock().unwrap();
        Some(
            bars.entry(key.to_owned())
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

    /// A line above the bars.
    pub fn println(&self, line: &str) {
        if self.quiet {
            return;
        }
        match &self.bars {
            Some((m, _)) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }
}
