//! Clinical safety at the edges, over real HTTP on both stores: a child who moves between local
//! authorities, uploads with mistakes in them, and upload rows that cannot be right.

mod common;

use common::*;
use cpis_core::plan::{PlanKind, Visibility, VisibilityRules};
use cpis_core::ukdate::uk_today;
use cpis_core::wire::{EventBatch, FeedChange, NotificationPage, UploadReport};
use cpis_core::{CareSetting, Region};

on_both_stores!(
    a_child_who_moves_shows_the_new_las_current_plan_beside_the_old_las_ended_one_and_both_las_are_told_once,
    an_las_upload_results_are_the_same_whether_or_not_another_la_holds_the_number,
    a_row_with_a_bad_nhs_number_never_removes_the_correctly_stored_child,
    an_extract_that_leaves_out_ended_plans_keeps_them_shown_for_their_window,
    implausible_and_incomplete_rows_are_rejected_with_the_reason,
);

async fn upload(c: &TestCentral, la: &str, token: &str, csv: &str, allow: bool) -> UploadReport {
    let r = c.upload(la, token, csv, allow).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

async fn notifications_of(c: &TestCentral, la: &str, token: &str) -> NotificationPage {
    c.http
        .get(format!("{}/v1/la/{la}/notifications?after=0", c.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn today() -> String {
    uk_today(chrono::Utc::now()).to_string()
}

async fn a_child_who_moves_shows_the_new_las_current_plan_beside_the_old_las_ended_one_and_both_las_are_told_once(
    c: TestCentral,
) {
    // L001 (north) ended its plan last month; the child moved to L002 (south), which opened one.
    let old = setup_register(&c, "L001", "north", 0..0).await;
    let new = setup_register(&c, "L002", "south", 0..0).await;
    let child = nhs(7);
    let ended_last_month = (uk_today(chrono::Utc::now()) - chrono::Duration::days(30)).to_string();
    upload(
        &c,
        "L001",
        &old,
        &format!(
            "{HEADER}{},Mover,Sam,2019-02-03,CPPI,2025-01-01,{ended_last_month},,,\n",
            child.as_digits()
        ),
        false,
    )
    .await;
    let report = upload(
        &c,
        "L002",
        &new,
        &format!(
            "{HEADER}{},Mover,Sam,2019-02-03,CPPI,2026-01-10,,,,\n",
            child.as_digits()
        ),
        false,
    )
    .await;
    assert_eq!((report.accepted_rows, report.rejected_rows), (1, 0));

    // The person carries both plans, each with its LA; the current one is the new LA's.
    let person = c.store.flag(&child).await.unwrap().unwrap();
    let today = uk_today(chrono::Utc::now());
    let plans: Vec<(String, Visibility)> = person
        .plans
        .iter()
        .map(|p| {
            (
                p.holder(&person).to_string(),
                p.visibility(today, &VisibilityRules::default()),
            )
        })
        .collect();
    assert!(
        plans.contains(&("L002".into(), Visibility::Current)),
        "{plans:?}"
    );
    assert!(
        plans
            .iter()
            .any(|(la, v)| la == "L001" && matches!(v, Visibility::Ended { .. })),
        "{plans:?}"
    );
    assert_eq!(
        person.local_authority.as_str(),
        "L002",
        "the most recent LA leads"
    );

    // Both regions' devices carry the whole person.
    for region in ["north", "south"] {
        let device = c.device(region, "RX1", CareSetting::Ambulance).await;
        let mut cache = Cache::default();
        device.pull(&mut cache, 100).await;
        let carried = &cache.flags[&child.as_digits()];
        assert_eq!(carried.plans.len(), 2, "{region}");
        assert_eq!(
            cache.digest(),
            c.store
                .region_digest(&Region::parse(region).unwrap())
                .await
                .unwrap()
        );
    }

    // Opening the alert tells both LAs (each holds a visible plan), once each, however often the
    // device hands the event in.
    let mut device = c.device("south", "RX1", CareSetting::Ambulance).await;
    let e = device.event(child, "para1");
    for _ in 0..3 {
        device
            .post(
                "/v1/events",
                &EventBatch {
                    events: vec![device.seal(&e)],
                },
            )
            .await;
    }
    for (la, token) in [("L001", &old), ("L002", &new)] {
        let page = notifications_of(&c, la, token).await;
        let for_event: Vec<_> = page
            .notifications
            .iter()
            .filter(|n| n.event_id == e.id)
            .collect();
        assert_eq!(for_event.len(), 1, "{la} told {} times", for_event.len());
    }

    // L002 later ends its own plan by leaving the child out: L001's record is untouched and the
    // child stays on both regions' devices.
    let report = upload(&c, "L002", &new, HEADER, true).await;
    assert_eq!(report.ended, 1);
    let person = c.store.flag(&child).await.unwrap().unwrap();
    assert_eq!(person.plans.len(), 2);
    c.shutdown().await;
}

async fn an_las_upload_results_are_the_same_whether_or_not_another_la_holds_the_number(
    c: TestCentral,
) {
    setup_register(&c, "L001", "north", 0..5).await;
    let other = setup_register(&c, "L002", "north", 0..0).await;
    // Child 1 is held by L001; child 50 by nobody. L002's results for both are identical.
    let report = upload(&c, "L002", &other, &csv_of([1, 50]), false).await;
    assert_eq!(report.rows.len(), 2);
    assert_eq!(
        (report.rows[0].accepted, &report.rows[0].reason),
        (report.rows[1].accepted, &report.rows[1].reason)
    );
    assert!(report.rows.iter().all(|r| r.accepted));
    assert_eq!(report.people, 2, "people counts only L002's own");
    assert!(report.changes.is_empty());
    c.shutdown().await;
}

async fn a_row_with_a_bad_nhs_number_never_removes_the_correctly_stored_child(c: TestCentral) {
    let token = setup_register(&c, "L001", "north", 0..20).await;
    // The extract mistypes child 5's number (the check digit fails): the row is rejected, and the
    // correctly stored child 5 is not removed: their plan ends today and stays shown.
    let mut digits: Vec<char> = nhs(5).as_digits().chars().collect();
    digits[9] = if digits[9] == '0' { '1' } else { '0' };
    let bad: String = digits.into_iter().collect();
    let mut csv = csv_of((0..20).filter(|i| *i != 5));
    csv.push_str(&format!(
        "{bad},Testfamily5,Sam,2019-02-03,CPPI,2025-01-01,,,,\n"
    ));
    let report = upload(&c, "L001", &token, &csv, false).await;
    assert_eq!(report.rejected_rows, 1);
    assert!(!report.rows.last().unwrap().accepted);
    let reason = report.rows.last().unwrap().reason.clone().unwrap();
    assert!(reason.contains("invalid NHS number"), "{reason}");
    assert!(
        !reason.contains(&bad),
        "the reason never repeats the number"
    );
    assert_eq!(report.removed, 0);
    assert_eq!(report.ended, 1);
    let change = &report.changes[0];
    assert_eq!(
        (change.nhs_number, change.action.as_str()),
        (nhs(5), "ended")
    );
    let child = c
        .store
        .flag(&nhs(5))
        .await
        .unwrap()
        .expect("child 5 is still held");
    assert_eq!(child.plans[0].end.map(|d| d.to_string()), Some(today()));
    let north = Region::parse("north").unwrap();
    let device = c.device("north", "RX1", CareSetting::Ambulance).await;
    let mut cache = Cache::default();
    device.pull(&mut cache, 100).await;
    assert!(cache.flags.contains_key(&nhs(5).as_digits()));
    assert_eq!(cache.digest(), c.store.region_digest(&north).await.unwrap());
    c.shutdown().await;
}

async fn an_extract_that_leaves_out_ended_plans_keeps_them_shown_for_their_window(c: TestCentral) {
    let token = setup_register(&c, "L001", "north", 0..0).await;
    let ended = (uk_today(chrono::Utc::now()) - chrono::Duration::days(100)).to_string();
    let mut csv = csv_of(0..20);
    csv.push_str(&format!(
        "{},Testfamily3,Sam,2019-02-03,LACI,2024-01-01,{ended},,,\n",
        nhs(3).as_digits()
    ));
    upload(&c, "L001", &token, &csv, false).await;
    // The next extract lists only open plans: child 3's ended LACI is kept, not dropped.
    let report = upload(&c, "L001", &token, &csv_of(0..20), false).await;
    assert_eq!((report.removed, report.ended), (0, 0));
    let child = c.store.flag(&nhs(3)).await.unwrap().unwrap();
    let kinds: Vec<PlanKind> = child.plans.iter().map(|p| p.kind).collect();
    assert!(kinds.contains(&PlanKind::LookedAfter), "{kinds:?}");
    assert!(report
        .changes
        .iter()
        .any(|c| c.nhs_number == nhs(3) && c.action == "kept"));
    // Only a delete date removes a record.
    let delete_yesterday = (uk_today(chrono::Utc::now()) - chrono::Duration::days(1)).to_string();
    let mut csv = csv_of((0..20).filter(|i| *i != 4));
    csv.push_str(&format!(
        "{},Testfamily4,Sam,2019-02-03,CPPI,2025-01-01,,,,{delete_yesterday}\n",
        nhs(4).as_digits()
    ));
    let report = upload(&c, "L001", &token, &csv, false).await;
    assert_eq!(report.removed, 1);
    assert!(c.store.flag(&nhs(4)).await.unwrap().is_none());
    let feed_removal = {
        let device = c.device("north", "RX1", CareSetting::Ambulance).await;
        device.page(0, 1000).await.ops.iter().any(
            |o| matches!(&o.change, FeedChange::RemoveFlag { nhs_number } if *nhs_number == nhs(4)),
        )
    };
    assert!(feed_removal, "the removal travels to devices");
    c.shutdown().await;
}

async fn implausible_and_incomplete_rows_are_rejected_with_the_reason(c: TestCentral) {
    let token = setup_register(&c, "L001", "north", 0..0).await;
    let today = uk_today(chrono::Utc::now());
    let future = (today + chrono::Duration::days(3)).to_string();
    let far = (today + chrono::Duration::days(400)).to_string();
    let csv = format!(
        "{HEADER}\
         {},Mother,Alex,1995-05-05,UCPI,2026-01-01,,,,\n\
         {},Child,Sam,2019-02-03,UCPI,2026-01-01,,2027-01-01,,\n\
         {},Future,Sam,{future},CPPI,2026-01-01,,,,\n\
         {},Later,Sam,2019-02-03,CPPI,{far},,,,\n\
         {},Mother,Jo,1995-05-05,UCPI,2026-01-01,,{future},,\n",
        nhs(1).as_digits(),
        nhs(2).as_digits(),
        nhs(3).as_digits(),
        nhs(4).as_digits(),
        nhs(5).as_digits(),
    );
    let report = upload(&c, "L001", &token, &csv, false).await;
    let reasons: Vec<String> = report
        .rows
        .iter()
        .map(|r| r.reason.clone().unwrap_or_default())
        .collect();
    assert!(
        reasons[0].contains("needs a due_date or an end_date"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("under 10"), "{reasons:?}");
    assert!(reasons[2].contains("in the future"), "{reasons:?}");
    assert!(reasons[3].contains("more than a year ahead"), "{reasons:?}");
    assert!(report.rows[4].accepted, "{reasons:?}");
    // The due date is stored and sent.
    let mother = c.store.flag(&nhs(5)).await.unwrap().unwrap();
    assert_eq!(mother.plans[0].due.map(|d| d.to_string()), Some(future));
    c.shutdown().await;
}
