//! The check that keeps `docs/FINDINGS.md` and `docs/RESULTS.md` from drifting apart: every
//! figure FINDINGS quotes in bold is found, word for word, in RESULTS.

/// `text` as prose: markdown's bold and code marks gone, every run of white space one space.
fn prose(text: &str) -> String {
    text.replace("**", "").replace('`', "").split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The bold spans of a markdown text that hold a figure (a digit), as prose.
fn bold_figures(markdown: &str) -> Vec<String> {
    markdown.split("**").skip(1).step_by(2).map(prose).filter(|s| s.chars().any(|c| c.is_ascii_digit())).collect()
}

/// The bold figures of `findings` that `results` does not hold.
fn missing_figures(findings: &str, results: &str) -> Vec<String> {
    let results = prose(results);
    bold_figures(findings).into_iter().filter(|f| !results.contains(f.as_str())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bold_figure_of_findings_is_in_results() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        let read = |name: &str| std::fs::read_to_string(docs.join(name)).unwrap_or_else(|e| panic!("docs/{name}: {e}"));
        let (findings, results) = (read("FINDINGS.md"), read("RESULTS.md"));
        assert!(bold_figures(&findings).len() >= 10, "FINDINGS.md quotes fewer than ten figures in bold");
        let missing = missing_figures(&findings, &results);
        assert!(
            missing.is_empty(),
            "figures FINDINGS.md quotes in bold that RESULTS.md does not hold:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn a_figure_is_found_across_line_breaks_and_marks_and_a_changed_one_is_not() {
        let results = "the replay ran at **561,469\nevents/s**, `1.04×` the scan";
        assert!(missing_figures("**561,469 events/s**, **1.04× the scan**, **not met**", results).is_empty());
        assert_eq!(missing_figures("**561,470 events/s**", results), vec!["561,470 events/s"]);
    }
}
