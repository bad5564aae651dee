//! A benchmark's CSV read back for its plot: columns by name, and the `# ` comment lines above
//! the header (a committed CSV says there which run it holds).

use std::path::Path;

use anyhow::{bail, Context, Result};

/// A CSV file: its header, its rows, and its leading comments.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    /// The `# ` lines before the header, without the `# `.
    pub comments: Vec<String>,
    name: String,
}

impl Table {
    /// Reads the CSV at `path`.
    pub fn read(path: &Path) -> Result<Table> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Table::parse(&path.display().to_string(), &text)
    }

    /// Parses CSV text; `name` says where it came from in errors.
    pub fn parse(name: &str, text: &str) -> Result<Table> {
        let comments = text
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| l.trim_start_matches('#').trim().to_owned())
            .collect();
        let mut reader = csv::ReaderBuilder::new().comment(Some(b'#')).from_reader(text.as_bytes());
        let header =
            reader.headers().with_context(|| format!("{name}: no header"))?.iter().map(str::to_owned).collect();
        let rows = reader
            .records()
            .map(|r| r.map(|r| r.iter().map(str::to_owned).collect()))
            .collect::<csv::Result<Vec<Vec<String>>>>()
            .with_context(|| format!("reading {name}"))?;
        Ok(Table { header, rows, comments, name: name.to_owned() })
    }

    /// Whether the table has column `column`.
    pub fn has(&self, column: &str) -> bool {
        self.header.iter().any(|h| h == column)
    }

    /// The names of the columns.
    pub fn columns(&self) -> &[String] {
        &self.header
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn index(&self, column: &str) -> Result<usize> {
        match self.header.iter().position(|h| h == column) {
            Some(i) => Ok(i),
            None => bail!("{}: no column {column:?} (columns: {})", self.name, self.header.join(", ")),
        }
    }

    /// The cells of `column` as text.
    pub fn text(&self, column: &str) -> Result<Vec<String>> {
        let i = self.index(column)?;
        Ok(self.rows.iter().map(|r| r.get(i).cloned().unwrap_or_default()).collect())
    }

    /// The cells of `column` as numbers; an empty cell is NaN (not measured).
    pub fn numbers(&self, column: &str) -> Result<Vec<f64>> {
        let i = self.index(column)?;
        self.rows
            .iter()
            .enumerate()
            .map(|(n, r)| {
                let cell = r.get(i).map_or("", |c| c.trim());
                if cell.is_empty() {
                    return Ok(f64::NAN);
                }
                cell.parse::<f64>()
                    .with_context(|| format!("{}: row {}, {column}: {cell:?} is not a number", self.name, n + 1))
            })
            .collect()
    }

    /// The `source:` comment: which run the data holds.
    pub fn source(&self) -> Option<String> {
        let lines: Vec<&str> = self.comments.iter().filter_map(|c| c.strip_prefix("source:")).map(str::trim).collect();
        (!lines.is_empty()).then(|| lines.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn columns_are_read_by_name_and_comments_kept() {
        let t = Table::parse("t", "# source: bench x at abc\n# another\nname,value\na,1.5\nb,\n").unwrap();
        assert_eq!(t.source().as_deref(), Some("bench x at abc"));
        assert_eq!(t.text("name").unwrap(), vec!["a", "b"]);
        let v = t.numbers("value").unwrap();
        assert_eq!(v[0], 1.5);
        assert!(v[1].is_nan(), "an empty cell is not measured");
        assert!(t.numbers("missing").unwrap_err().to_string().contains("no column"));
    }
}
