//! Verification against the expected state and between versions, on projections folded from
//! the seeded log with the product's fold.

use lab::bank::{V3, V4};

use crate::support::{project, seeded, small};

#[tokio::test]
async fn v4_matches_and_v3_differs_exactly_on_the_bug() {
    let (_url, client) = seeded(small(8)).await;
    project(&client, &V4).await;
    project(&client, &V3).await;

    let v4 = lab::verify::against_expected(&client, &V4).await.unwrap();
    assert!(v4.ok && v4.diffs == 0 && v4.left_rows == 2_000, "{}", v4.render());
    assert!(v4.render().ends_with("diffs: 0"));

    let v3 = lab::verify::against_expected(&client, &V3).await.unwrap();
    let bugs: i64 =
        client.query_one("SELECT count(*) FROM lab.expected_accounts WHERE v3_bug", &[]).await.unwrap().get(0);
    assert!(bugs > 0);
    assert!(v3.ok && v3.unexpected == 0, "{}", v3.render());
    assert_eq!((v3.diffs, v3.expected_diffs), (bugs as u64, bugs as u64));
    assert!(v3.sample.iter().all(|s| s.known && s.differs) && !v3.sample.is_empty());

    let between = lab::verify::between_versions(&client, &V3, &V4).await.unwrap();
    assert!(between.ok && between.diffs == bugs as u64 && between.unexpected == 0, "{}", between.render());
    assert_eq!(between.expected_diffs, bugs as u64, "v3 against v4 knows the fee-bug set");
    // The sample rows are the bug's, and say so (not "(unexpected)" beside `unexpected: 0`).
    assert!(!between.sample.is_empty() && between.sample.iter().all(|s| s.known), "{}", between.render());
    assert!(!between.render().contains("(unexpected)"), "{}", between.render());
    let same = lab::verify::between_versions(&client, &V4, &V4).await.unwrap();
    assert!(same.ok && same.diffs == 0);
}

#[tokio::test]
async fn a_corrupted_row_is_reported_exactly() {
    let (_url, client) = seeded(small(9)).await;
    project(&client, &V4).await;
    project(&client, &V3).await;
    let victim: i64 = client
        .query_one("SELECT min(aggregate_id) FROM lab.expected_accounts WHERE NOT v3_bug AND aggregate_id > 100", &[])
        .await
        .unwrap()
        .get(0);
    client
        .execute("UPDATE read.accounts_v4 SET balance = balance + 1 WHERE aggregate_id = $1", &[&victim])
        .await
        .unwrap();
    let v4 = lab::verify::against_expected(&client, &V4).await.unwrap();
    assert!(!v4.ok && v4.diffs == 1 && v4.unexpected == 1, "{}", v4.render());
    assert_eq!(v4.sample.len(), 1);
    assert_eq!(v4.sample[0].aggregate_id, victim);
    assert!(v4.render().contains(&format!("aggregate {victim}")) && v4.render().ends_with("diffs: 1"));

    client.execute("DELETE FROM read.accounts_v4 WHERE aggregate_id = 1", &[]).await.unwrap();
    let v4 = lab::verify::against_expected(&client, &V4).await.unwrap();
    assert_eq!((v4.diffs, v4.left_rows), (2, 1_999), "a missing row counts: {}", v4.render());
    assert!(v4.sample.iter().any(|s| s.aggregate_id == 1 && s.left.is_none()));

    // v3: hiding one buggy aggregate's difference is as wrong as adding one.
    let hidden: i64 =
        client.query_one("SELECT min(aggregate_id) FROM lab.expected_accounts WHERE v3_bug", &[]).await.unwrap().get(0);
    client
        .execute(
            "UPDATE read.accounts_v3 AS r SET balance = e.balance FROM lab.expected_accounts AS e \
             WHERE e.aggregate_id = r.aggregate_id AND r.aggregate_id = $1",
            &[&hidden],
        )
        .await
        .unwrap();
    let v3 = lab::verify::against_expected(&client, &V3).await.unwrap();
    assert!(!v3.ok && v3.unexpected == 1 && v3.diffs + 1 == v3.expected_diffs, "{}", v3.render());
    assert_eq!(v3.sample[0].aggregate_id, hidden, "the unexpected aggregate comes first");
    assert!(v3.sample[0].known && !v3.sample[0].differs);
    assert!(v3.sample[1..].iter().all(|s| s.known && s.differs));
}
