//! Probe reports: human (✓/✗, durations, a summary line), JSON, and JUnit XML for CI.

use std::fmt::Write as _;

use super::Outcome;

/// Phase timings of a verify run, in milliseconds.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Timings {
    pub build_ms: u64,
    pub up_ms: u64,
    pub probes_ms: u64,
    pub teardown_ms: u64,
}

pub fn human(project: &str, outcomes: &[Outcome], timings: Option<&Timings>) -> String {
    let mut s = String::new();
    for o in outcomes {
        let mark = if o.passed { "✓" } else { "✗" };
        let _ = writeln!(s, "{mark} {} ({} ms)", o.name, o.duration_ms);
        if !o.passed {
            let _ = writeln!(s, "    expected: {}", o.expected);
            let _ = writeln!(s, "    saw:      {}", o.saw);
            for (svc, lines) in &o.logs {
                if lines.is_empty() {
                    continue;
                }
                let _ = writeln!(s, "    last log lines of {svc}:");
                for l in lines {
                    let _ = writeln!(s, "      | {l}");
                }
            }
        }
    }
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    let _ = write!(
        s,
        "{project}: {} of {} passed",
        outcomes.len() - failed,
        crate::words::count(outcomes.len(), "probe")
    );
    if let Some(t) = timings {
        let _ = write!(
            s,
            " (build {:.1}s, up {:.1}s, probes {:.1}s, teardown {:.1}s)",
            t.build_ms as f64 / 1000.0,
            t.up_ms as f64 / 1000.0,
            t.probes_ms as f64 / 1000.0,
            t.teardown_ms as f64 / 1000.0
        );
    }
    s.push('\n');
    s
}

pub fn json(project: &str, outcomes: &[Outcome], timings: Option<&Timings>) -> String {
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    serde_json::to_string_pretty(&serde_json::json!({
        "project": project,
        "passed": failed == 0,
        "total": outcomes.len(),
        "failed": failed,
        "timings": timings,
        "probes": outcomes,
    }))
    .expect("report serializes")
}

/// XML text: the five entities, and characters XML 1.0 forbids dropped.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\t' | '\n' | '\r' => o.push(c),
            c if (c as u32) < 0x20 => {}
            c => o.push(c),
        }
    }
    o
}

/// JUnit XML as Jenkins, GitLab and GitHub reporters read it: one testsuite, one
/// testcase per probe, a `<failure>` with expected/saw/logs for each failed one.
pub fn junit(project: &str, outcomes: &[Outcome]) -> String {
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    let total_s: f64 = outcomes.iter().map(|o| o.duration_ms as f64 / 1000.0).sum();
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        s,
        "<testsuites name=\"devbox verify\" tests=\"{}\" failures=\"{failed}\" time=\"{total_s:.3}\">",
        outcomes.len()
    );
    let _ = writeln!(
        s,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" skipped=\"0\" time=\"{total_s:.3}\">",
        esc(project),
        outcomes.len()
    );
    for o in outcomes {
        let _ = write!(
            s,
            "    <testcase classname=\"{}.{}\" name=\"{}\" time=\"{:.3}\"",
            esc(project),
            o.kind,
            esc(&o.name),
            o.duration_ms as f64 / 1000.0
        );
        if o.passed {
            s.push_str("/>\n");
            continue;
        }
        s.push_str(">\n");
        let mut body = format!("expected: {}\nsaw: {}\n", o.expected, o.saw);
        for (svc, lines) in &o.logs {
            let _ = writeln!(body, "last log lines of {svc}:");
            for l in lines {
                let _ = writeln!(body, "  | {l}");
            }
        }
        let _ = writeln!(
            s,
            "      <failure message=\"{}\" type=\"{}\">{}</failure>",
            esc(&format!("expected {}", o.expected)),
            o.kind,
            esc(&body)
        );
        s.push_str("    </testcase>\n");
    }
    s.push_str("  </testsuite>\n</testsuites>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn outcome(name: &str, passed: bool) -> Outcome {
        Outcome {
            name: name.into(),
            kind: "tcp",
            passed,
            duration_ms: 12,
            attempts: 1,
            expected: "127.0.0.1:7777 accepts a connection and answers \"pong\"".into(),
            saw: "answer \"nope <&> \u{1}\"".into(),
            logs: BTreeMap::from([("server".to_owned(), vec!["listening".to_owned()])]),
        }
    }

    #[test]
    fn junit_escapes_and_counts() {
        let x = junit(
            "ref<box>",
            &[outcome("a & b", true), outcome("c \"d\"", false)],
        );
        assert!(x.contains("tests=\"2\" failures=\"1\""), "{x}");
        assert!(x.contains("name=\"a &amp; b\""), "{x}");
        assert!(x.contains("name=\"c &quot;d&quot;\""), "{x}");
        assert!(x.contains("nope &lt;&amp;&gt; "), "{x}");
        assert!(!x.contains('\u{1}'), "control characters are dropped");
        assert!(x.contains("  | listening"), "{x}");
        assert!(x.trim_end().ends_with("</testsuites>"));
    }

    #[test]
    fn human_marks_and_summarises() {
        let h = human(
            "refbox",
            &[outcome("one", true), outcome("two", false)],
            None,
        );
        assert!(
            h.starts_with("✓ one (12 ms)\n✗ two (12 ms)\n    expected: "),
            "{h}"
        );
        assert!(h.ends_with("refbox: 1 of 2 probes passed\n"), "{h}");
    }
}
