//! A file of one or more YAML documents, each read on its own so one broken document does not
//! hide the others, and each knowing the line it starts on.

/// One YAML document of the file.
#[derive(Debug)]
pub struct Document {
    /// 1-based position in the file.
    pub index: usize,
    /// The file's line the document's text starts on (1-based).
    pub line: usize,
    pub text: String,
    /// The document as JSON, or the YAML error (its line numbers are the file's).
    pub value: Result<serde_json::Value, serde_saphyr::Error>,
}

/// Every non-empty document of `text`. Documents are split at `---` and `...` markers at the
/// start of a line, as YAML splits them.
pub fn documents(text: &str) -> Vec<Document> {
    let mut out = Vec::new();
    let mut start = 1;
    let mut chunk = String::new();
    let mut finish = |chunk: &mut String, start: usize| {
        let taken = std::mem::take(chunk);
        if has_content(&taken) {
            let index = out.len() + 1;
            out.push(parse(index, start, taken));
        }
    };
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if let Some(rest) = marker(line, "---") {
            finish(&mut chunk, start);
            start = n;
            // `--- {a: 1}`: content after the marker belongs to the new document.
            chunk.push_str(&" ".repeat(3));
            chunk.push_str(rest);
            chunk.push('\n');
            continue;
        }
        if marker(line, "...").is_some() {
            finish(&mut chunk, start);
            start = n + 1;
            continue;
        }
        if !has_content(&chunk) {
            // Blank and comment lines before a document are not part of it.
            chunk.clear();
            start = n;
        }
        chunk.push_str(line);
        chunk.push('\n');
    }
    finish(&mut chunk, start);
    out
}

/// The rest of `line` when it starts with the document marker `m`.
fn marker<'a>(line: &'a str, m: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(m)?;
    (rest.is_empty() || rest.starts_with([' ', '\t'])).then_some(rest)
}

fn has_content(text: &str) -> bool {
    text.lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#')
    })
}

fn parse(index: usize, line: usize, text: String) -> Document {
    // Blank lines before the text make the parser's line numbers the file's.
    let padded = format!("{}{}", "\n".repeat(line.saturating_sub(1)), text);
    let value = serde_saphyr::from_str::<serde_json::Value>(&padded);
    Document {
        index,
        line,
        text,
        value,
    }
}

impl Document {
    /// The file's line of the first line at or after the document's `checks:` that names check
    /// `name`, or where the document starts.
    pub fn line_of_check(&self, name: &str) -> usize {
        self.check_index(name).map_or(self.line, |i| self.line + i)
    }

    /// The index among the document's lines of check `name`'s `name:` line.
    fn check_index(&self, name: &str) -> Option<usize> {
        let lines: Vec<&str> = self.text.lines().collect();
        let from = lines
            .iter()
            .position(|l| l.trim_start().starts_with("checks:"))
            .unwrap_or(0);
        (from..lines.len()).find(|i| names(lines[*i], name))
    }

    /// The file's line of `field` (its last part, `ratio.numerator` → `numerator:`) within check
    /// `name`'s list item, or the check's line.
    pub fn line_of_field(&self, name: &str, field: &str) -> usize {
        let Some(at) = self.check_index(name) else {
            return self.line;
        };
        let key = field.rsplit('.').next().unwrap_or(field);
        let key = format!("{}:", key.split('[').next().unwrap_or(key));
        let lines: Vec<&str> = self.text.lines().collect();
        let indent = |l: &str| l.len() - l.trim_start().len();
        // The list item the name is in: back to its `- `, forward to the next item or less.
        let item = (0..=at)
            .rev()
            .find(|i| lines[*i].trim_start().starts_with("- "))
            .unwrap_or(at);
        let depth = indent(lines[item]);
        let end = (item + 1..lines.len())
            .find(|i| {
                let l = lines[*i];
                let shallower = indent(l) < depth;
                let sibling = indent(l) == depth && l.trim_start().starts_with('-');
                !l.trim().is_empty() && (shallower || sibling)
            })
            .unwrap_or(lines.len());
        let line = (item..end).find(|i| {
            let text = lines[*i].trim_start();
            text.trim_start_matches("- ").starts_with(&key)
        });
        self.line + line.unwrap_or(at)
    }
}

/// Whether a YAML line is `name: <name>` (in a list item or not, quoted or not).
fn names(line: &str, name: &str) -> bool {
    let t = line.trim_start().trim_start_matches('-').trim_start();
    let Some(value) = t.strip_prefix("name:") else {
        return false;
    };
    let value = value.split(" #").next().unwrap_or_default().trim();
    value.trim_matches(|c| c == '"' || c == '\'') == name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_know_their_lines() {
        let text = "# leading comment\napiVersion: v1\nkind: A\n---\nkind: B\n---\n# only a comment\n--- {kind: C}\n...\n\nkind: D\n";
        let docs = documents(text);
        let kinds: Vec<(usize, usize, String)> = docs
            .iter()
            .map(|d| {
                let v = d.value.as_ref().expect("parses");
                (
                    d.index,
                    d.line,
                    v["kind"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                (1, 2, "A".into()),
                (2, 5, "B".into()),
                (3, 8, "C".into()),
                (4, 11, "D".into())
            ]
        );
    }

    #[test]
    fn a_broken_document_reports_the_files_line_and_spares_the_others() {
        let docs = documents("kind: A\n---\nkind: [\n---\nkind: C\n");
        assert_eq!(docs.len(), 3);
        let err = docs[1].value.as_ref().expect_err("broken").to_string();
        assert!(err.contains("line 3") || err.contains("3:"), "{err}");
        assert!(docs[2].value.is_ok());
        assert!(documents("").is_empty());
        assert!(documents("\n# nothing\n---\n").is_empty());
    }

    #[test]
    fn a_block_scalar_holding_dashes_is_not_split() {
        let docs = documents("a: |\n  ---\n  x\nb: 1\n");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].value.as_ref().expect("parses")["a"], "---\nx\n");
    }

    #[test]
    fn the_line_of_a_check() {
        let docs = documents(
            "kind: RolloutGate\nspec:\n  probe:\n    requests:\n    - name: errors\n  checks:\n  - name: latency\n  - query: up\n    name: \"errors\"  # the one\n",
        );
        assert_eq!(docs[0].line_of_check("errors"), 9);
        assert_eq!(docs[0].line_of_check("latency"), 7);
        assert_eq!(docs[0].line_of_check("absent"), 1);
    }

    #[test]
    fn the_line_of_a_field_stays_inside_its_check() {
        let docs = documents(
            "spec:\n  checks:\n  - name: a\n    query: up\n  - name: b\n    ratio:\n      numerator: x\n      denominator: y\n    threshold: {op: <, value: 1}\n",
        );
        let d = &docs[0];
        assert_eq!(d.line_of_field("b", "ratio.numerator"), 7);
        assert_eq!(d.line_of_field("b", "threshold"), 9);
        assert_eq!(d.line_of_field("a", "query"), 4);
        // Not in a's item: a's own line.
        assert_eq!(d.line_of_field("a", "threshold"), 3);
        assert_eq!(d.line_of_field("b", "minSamples"), 5);
        assert_eq!(d.line_of_field("none", "query"), 1);
    }
}
