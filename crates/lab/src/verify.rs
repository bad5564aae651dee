//! Verification: a read model against the lab's expected state, or two versions against each
//! other, in SQL whose text is part of the report.
//!
//! Against the expectation, v4 must match every aggregate exactly; v3 must differ on exactly
//! the aggregates that have a fee in the nested v2 shape (`v3_bug`), no more and no fewer.

use std::fmt::Write as _;

use fold::AnyProjection;
use tokio_postgres::GenericClient;

use crate::{Error, Result};

const EXPECTED_SQL: &str = include_str!("sql/verify_expected.sql");
const EXPECTED_SAMPLE_SQL: &str = include_str!("sql/verify_expected_sample.sql");
const VERSIONS_SQL: &str = include_str!("sql/verify_versions.sql");
const VERSIONS_SAMPLE_SQL: &str = include_str!("sql/verify_versions_sample.sql");
const VERSIONS_KNOWN_SQL: &str = include_str!("sql/verify_versions_known.sql");

/// The expected state's table.
pub const EXPECTED_TABLE: &str = "lab.expected_accounts";

/// One aggregate that differs or was known to, with both sides as JSON (`None` where the
/// row is missing).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiffSample {
    pub aggregate_id: i64,
    /// Whether this aggregate was known to differ (v3's fee bug).
    pub known: bool,
    /// Whether it differs.
    pub differs: bool,
    pub left: Option<String>,
    pub right: Option<String>,
}

/// The outcome of a comparison.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VerifyReport {
    /// The compared tables.
    pub left: String,
    pub right: String,
    /// The compared columns (besides `aggregate_id`).
    pub columns: Vec<String>,
    pub left_rows: i64,
    pub right_rows: i64,
    /// Aggregates that differ (a row missing on one side counts).
    pub diffs: u64,
    /// Aggregates known to differ: v3's fee-bug aggregates, else 0.
    pub expected_diffs: u64,
    /// Size of the symmetric difference between the differing and the known-to-differ sets.
    pub unexpected: u64,
    /// Up to five differing or known-to-differ aggregates, unexpected ones first.
    pub sample: Vec<DiffSample>,
    pub ok: bool,
    /// The SQL that counted the differences.
    pub sql: String,
}

impl VerifyReport {
    /// The human-readable report; its last line is `diffs: N`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{} vs {} on {}", self.left, self.right, self.columns.join(", "));
        let _ = writeln!(out, "rows: {} vs {}", self.left_rows, self.right_rows);
        if self.expected_diffs > 0 {
            let _ = writeln!(out, "known to differ (nested v2 fees read as zero): {}", self.expected_diffs);
        }
        let _ = writeln!(out, "unexpected: {}", self.unexpected);
        for s in &self.sample {
            let note = match (s.known, s.differs) {
                (true, true) => " (known to differ)",
                (true, false) => " (known to differ, but matches: unexpected)",
                (false, _) => " (unexpected)",
            };
            let _ = writeln!(out, "  aggregate {}{note}:", s.aggregate_id);
            let _ = writeln!(out, "    {}: {}", self.left, s.left.as_deref().unwrap_or("(missing)"));
            let _ = writeln!(out, "    {}: {}", self.right, s.right.as_deref().unwrap_or("(missing)"));
        }
        let _ = writeln!(out, "verdict: {}", if self.ok { "OK" } else { "MISMATCH" });
        let _ = write!(out, "diffs: {}", self.diffs);
        out
    }
}

/// The columns a projection's table has besides `aggregate_id`, in the expected table's names.
pub fn columns(projection: &dyn AnyProjection) -> Vec<&'static str> {
    projection.all_columns().iter().map(|c| c.name).filter(|c| *c != "aggregate_id").collect()
}

fn table(projection: &dyn AnyProjection) -> String {
    format!("read.\"{}\"", projection.table())
}

fn prefixed(alias: &str, cols: &[&str]) -> String {
    cols.iter().map(|c| format!("{alias}.{c}")).collect::<Vec<_>>().join(", ")
}

/// The aggregates known to differ from the truth: v3's fee bug, recorded by the generator.
fn expected_filter(projection: &dyn AnyProjection) -> &'static str {
    if projection.name() == crate::bank::V3.name() {
        "e.v3_bug"
    } else {
        "FALSE"
    }
}

fn render_expected_sql(template: &str, projection: &dyn AnyProjection) -> String {
    let cols = columns(projection);
    template
        .replace("{table}", &table(projection))
        .replace("{read_columns}", &prefixed("r", &cols))
        .replace("{expected_columns}", &prefixed("e", &cols))
        .replace("{expected_filter}", expected_filter(projection))
}

/// The SQL of [`against_expected`], ready to print.
pub fn against_expected_sql(projection: &dyn AnyProjection) -> String {
    render_expected_sql(EXPECTED_SQL, projection)
}

/// The columns both versions have, in `a`'s order.
fn common_columns(a: &dyn AnyProjection, b: &dyn AnyProjection) -> Vec<&'static str> {
    let theirs = columns(b);
    columns(a).into_iter().filter(|c| theirs.contains(c)).collect()
}

fn render_versions_sql(template: &str, a: &dyn AnyProjection, b: &dyn AnyProjection) -> String {
    let mut cols = vec!["aggregate_id"];
    cols.extend(common_columns(a, b));
    template.replace("{columns}", &cols.join(", ")).replace("{a}", &table(a)).replace("{b}", &table(b))
}

/// The SQL of [`between_versions`], ready to print.
pub fn between_versions_sql(a: &dyn AnyProjection, b: &dyn AnyProjection) -> String {
    render_versions_sql(VERSIONS_SQL, a, b)
}

async fn require_table<C: GenericClient>(client: &C, name: &str) -> Result<()> {
    let exists: bool = client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&name]).await?.get(0);
    if exists {
        Ok(())
    } else {
        Err(Error::MissingTable(name.to_owned()))
    }
}

/// Whether the lab holds a true state to check `projection` against: a version of the bank's
/// accounts in a database the lab seeded.
pub async fn has_expected<C: GenericClient>(client: &C, projection: &dyn AnyProjection) -> Result<bool> {
    if projection.family() != crate::bank::V4.family() {
        return Ok(false);
    }
    let exists: bool = client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&EXPECTED_TABLE]).await?.get(0);
    Ok(exists)
}

/// Compares every aggregate of `projection`'s table with `lab.expected_accounts`. For v4 it
/// is ok when nothing differs; for v3 when exactly the `v3_bug` aggregates differ. Run it with
/// the log quiescent and the projection caught up.
pub async fn against_expected<C: GenericClient>(client: &C, projection: &dyn AnyProjection) -> Result<VerifyReport> {
    if projection.family() != crate::bank::V4.family() {
        return Err(Error::NoExpectedState(projection.name().to_owned()));
    }
    require_table(client, &table(projection)).await?;
    require_table(client, EXPECTED_TABLE).await?;
    let sql = against_expected_sql(projection);
    let row = client.query_one(sql.as_str(), &[]).await?;
    let (left_rows, right_rows): (i64, i64) = (row.get(0), row.get(1));
    let (diffs, expected_diffs, unexpected): (i64, i64, i64) = (row.get(2), row.get(3), row.get(4));
    let sample_sql = render_expected_sql(EXPECTED_SAMPLE_SQL, projection);
    let sample = client
        .query(sample_sql.as_str(), &[])
        .await?
        .iter()
        .map(|r| DiffSample {
            aggregate_id: r.get(0),
            known: r.get(1),
            differs: r.get(2),
            left: r.get(3),
            right: r.get(4),
        })
        .collect();
    Ok(VerifyReport {
        left: table(projection),
        right: EXPECTED_TABLE.to_owned(),
        columns: columns(projection).iter().map(|c| c.to_string()).collect(),
        left_rows,
        right_rows,
        diffs: diffs as u64,
        expected_diffs: expected_diffs as u64,
        unexpected: unexpected as u64,
        sample,
        ok: unexpected == 0,
        sql,
    })
}

/// Compares the tables of versions `a` and `b` on their common columns; ok iff no aggregate
/// differs, except that v3 against v4 must differ on exactly the fee-bug aggregates.
pub async fn between_versions<C: GenericClient>(
    client: &C,
    a: &dyn AnyProjection,
    b: &dyn AnyProjection,
) -> Result<VerifyReport> {
    if a.family() != b.family() {
        return Err(Error::Config(format!(
            "{} ({}) and {} ({}) are versions of different read models",
            a.name(),
            a.family(),
            b.name(),
            b.family()
        )));
    }
    require_table(client, &table(a)).await?;
    require_table(client, &table(b)).await?;
    // v3 and v4 differ by design (v3's fee bug): compare their difference set with the
    // generator's record of the aggregates the bug touches.
    let bug_pair = {
        let mut pair = [a.name(), b.name()];
        pair.sort_unstable();
        pair == [crate::bank::V3.name(), crate::bank::V4.name()]
    };
    let knows_bug: bool = bug_pair
        && client.query_one("SELECT to_regclass('lab.expected_accounts') IS NOT NULL", &[]).await?.get::<_, bool>(0);
    let sql = if knows_bug { render_versions_sql(VERSIONS_KNOWN_SQL, a, b) } else { between_versions_sql(a, b) };
    let (diffs, expected_diffs, unexpected): (i64, i64, i64) = if knows_bug {
        let row = client.query_one(sql.as_str(), &[]).await?;
        (row.get(0), row.get(1), row.get(2))
    } else {
        let diffs: i64 = client.query_one(sql.as_str(), &[]).await?.get(0);
        (diffs, 0, diffs)
    };
    let counts = client
        .query_one(&format!("SELECT (SELECT count(*) FROM {}), (SELECT count(*) FROM {})", table(a), table(b)), &[])
        .await?;
    let sample_sql = render_versions_sql(VERSIONS_SAMPLE_SQL, a, b);
    let mut sample: Vec<DiffSample> = client
        .query(sample_sql.as_str(), &[])
        .await?
        .iter()
        .map(|r| DiffSample { aggregate_id: r.get(0), known: false, differs: true, left: r.get(1), right: r.get(2) })
        .collect();
    if knows_bug {
        // Label each sample row against the generator's record of the fee-bug aggregates, so
        // that a row the bug explains is not printed as unexpected.
        let ids: Vec<i64> = sample.iter().map(|s| s.aggregate_id).collect();
        let known: std::collections::HashSet<i64> = client
            .query("SELECT aggregate_id FROM lab.expected_accounts WHERE v3_bug AND aggregate_id = ANY($1)", &[&ids])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for s in &mut sample {
            s.known = known.contains(&s.aggregate_id);
        }
    }
    Ok(VerifyReport {
        left: table(a),
        right: table(b),
        columns: common_columns(a, b).iter().map(|c| c.to_string()).collect(),
        left_rows: counts.get(0),
        right_rows: counts.get(1),
        diffs: diffs as u64,
        expected_diffs: expected_diffs as u64,
        unexpected: unexpected as u64,
        sample,
        ok: unexpected == 0,
        sql,
    })
}

/// How many events of the log have their next version before them in `(tx_id, global_seq)`
/// order: the case the version guard holds back. Tests use it to show the producer still
/// makes it.
pub async fn inverted_versions<C: GenericClient>(client: &C) -> Result<i64> {
    Ok(client.query_one(include_str!("sql/inverted_versions.sql"), &[]).await?.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_names_the_projection_columns() {
        use crate::bank::{V3, V4};
        let v3 = against_expected_sql(&V3);
        assert!(v3.contains("read.\"accounts_v3\"") && v3.contains("e.v3_bug") && !v3.contains("lifetime_deposits"));
        assert!(!v3.contains('{'), "all placeholders filled: {v3}");
        let v4 = against_expected_sql(&V4);
        assert!(v4.contains("r.last_activity_at") && v4.contains("WHERE FALSE"));
        let both = between_versions_sql(&V3, &V4);
        assert!(both.contains("EXCEPT ALL") && !both.contains("lifetime_deposits") && !both.contains('{'));
    }

    #[test]
    fn report_ends_with_the_diff_count() {
        let report = VerifyReport {
            left: "a".into(),
            right: "b".into(),
            columns: vec!["balance".into()],
            left_rows: 2,
            right_rows: 2,
            diffs: 1,
            expected_diffs: 0,
            unexpected: 1,
            sample: vec![DiffSample {
                aggregate_id: 5,
                known: false,
                differs: true,
                left: Some("{}".into()),
                right: None,
            }],
            ok: false,
            sql: String::new(),
        };
        let text = report.render();
        assert!(text.ends_with("\ndiffs: 1"), "{text}");
        assert!(text.contains("(missing)") && text.contains("MISMATCH") && text.contains("(unexpected)"));
    }
}
