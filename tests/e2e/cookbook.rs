//! `docs/clients.md` shows each library's signing code verbatim from the
//! peer that the end-to-end tests run (`tests/e2e/rfc9421.rs`): every block
//! announced by `<!-- cookbook: PATH#NAME -->` must equal the lines between
//! `cookbook:start NAME` and `cookbook:end NAME` in PATH, so what the
//! cookbook tells client teams to paste is the code the tests prove.

use edge_hmac_tests::build::workspace;

/// The lines strictly between the `cookbook:start name` and
/// `cookbook:end name` marker lines of `text`.
fn region(text: &str, name: &str) -> Option<String> {
    let start = format!("cookbook:start {name}");
    let end = format!("cookbook:end {name}");
    let mut lines = text.lines().skip_while(|l| !l.contains(&start));
    lines.next()?;
    let body: Vec<&str> = lines.take_while(|l| !l.contains(&end)).collect();
    Some(body.join("\n"))
}

/// Every cookbook block in docs/clients.md is its peer's marked region,
/// byte for byte; there is one for each library the tests run.
#[test]
fn cookbook_blocks_are_the_tested_code() {
    let doc = std::fs::read_to_string(workspace().join("docs/clients.md")).unwrap();
    let mut seen = Vec::new();
    let mut rest = doc.as_str();
    while let Some(at) = rest.find("<!-- cookbook: ") {
        rest = &rest[at + "<!-- cookbook: ".len()..];
        let (target, after) = rest.split_once(" -->").expect("a closed marker");
        let (path, name) = target.split_once('#').expect("PATH#NAME");
        // The fenced block right after the marker.
        let fence = after.find("```").expect("a code block after the marker");
        let code = &after[fence..];
        let body_start = code.find('\n').expect("a fence line") + 1;
        let body_end = code[body_start..].find("\n```").expect("a closing fence");
        let shown = &code[body_start..body_start + body_end];
        let source = std::fs::read_to_string(workspace().join(path))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let tested = region(&source, name).unwrap_or_else(|| panic!("{path}: no region {name}"));
        assert_eq!(
            shown, tested,
            "docs/clients.md's block for {path}#{name} differs from the tested code; paste the region between its cookbook markers"
        );
        seen.push(name.to_owned());
        rest = &code[body_start + body_end..];
    }
    seen.sort();
    assert_eq!(seen, ["node", "python", "rust"]);
}
