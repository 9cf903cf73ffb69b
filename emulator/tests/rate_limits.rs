//! Per-bucket rate limits with fixed windows.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{TestOrg, assert_okta_error};
use okta_emulator::RateLimits;
use reqwest::Response;

fn header_number(response: &Response, name: &str) -> u64 {
    response.headers()[name]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("a number")
}

fn small_budgets(window: Duration) -> RateLimits {
    RateLimits {
        window,
        apps: 3,
        app_by_id: 5,
        clients: 2,
        token: 5,
        other: 5,
    }
}

#[tokio::test]
async fn budget_exhaustion_gives_e0000047() {
    let org = TestOrg::start_with(small_budgets(Duration::from_secs(60))).await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();

    for expected_remaining in [2, 1, 0] {
        let response = org.get("/api/v1/apps").await;
        assert_eq!(response.status(), 200);
        assert_eq!(header_number(&response, "x-rate-limit-limit"), 3);
        assert_eq!(
            header_number(&response, "x-rate-limit-remaining"),
            expected_remaining
        );
    }

    let limited = org.get("/api/v1/apps").await;
    assert_eq!(header_number(&limited, "x-rate-limit-limit"), 3);
    assert_eq!(header_number(&limited, "x-rate-limit-remaining"), 0);
    let reset = header_number(&limited, "x-rate-limit-reset");
    assert!(
        (now + 59..=now + 62).contains(&reset),
        "reset {reset}, now {now}"
    );
    assert_okta_error(
        limited,
        429,
        "E0000047",
        "API call exceeded rate limit due to too many requests.",
        &[],
    )
    .await;

    // Other buckets keep their own budget.
    assert_eq!(org.get("/oauth2/v1/clients").await.status(), 200);
}

#[tokio::test]
async fn rate_limited_request_changes_nothing() {
    let org = TestOrg::start_with(small_budgets(Duration::from_secs(60))).await;
    org.register("one").await;
    org.register("two").await;

    let response = org
        .post_json("/oauth2/v1/clients", &common::service_client("three"))
        .await;
    assert_eq!(response.status(), 429);
    assert_eq!(org.emulator.apps().len(), 2);
    let last = org.emulator.requests().pop().expect("recorded");
    assert_eq!(last.status, 429);
    assert_eq!(last.bucket.as_deref(), Some("clients"));
}

#[tokio::test]
async fn window_resets_after_its_length() {
    let window = Duration::from_millis(200);
    let org = TestOrg::start_with(small_budgets(window)).await;
    for _ in 0..2 {
        assert_eq!(org.get("/oauth2/v1/clients").await.status(), 200);
    }
    let started = Instant::now();
    assert_eq!(org.get("/oauth2/v1/clients").await.status(), 429);

    // Poll until the window ends; the deadline only bounds a broken reset.
    let deadline = started + Duration::from_secs(10);
    let reset_response = loop {
        let response = org.get("/oauth2/v1/clients").await;
        if response.status() == 200 {
            break response;
        }
        assert_eq!(response.status(), 429);
        assert!(Instant::now() < deadline, "the window never reset");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(header_number(&reset_response, "x-rate-limit-remaining"), 1);
}

#[tokio::test]
async fn wrong_token_still_counts() {
    let org = TestOrg::start_with(small_budgets(Duration::from_secs(60))).await;
    for _ in 0..2 {
        let response = org
            .send(org.anonymous(reqwest::Method::GET, "/oauth2/v1/clients"))
            .await;
        assert_eq!(response.status(), 401);
    }
    assert_eq!(org.get("/oauth2/v1/clients").await.status(), 429);
}

#[tokio::test]
async fn clock_offset_moves_reset_and_date() {
    let org = TestOrg::start().await;
    org.emulator.set_clock_offset(3600);
    let real_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();

    let response = org.get("/api/v1/apps").await;
    let reset = header_number(&response, "x-rate-limit-reset");
    assert!(
        (real_now + 3600 + 59..=real_now + 3600 + 62).contains(&reset),
        "reset {reset} is one window after the shifted now {}",
        real_now + 3600
    );

    let date = response.headers()["date"].to_str().expect("ASCII");
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let date_seconds = time::PrimitiveDateTime::parse(date, format)
        .expect("an IMF-fixdate")
        .assume_utc()
        .unix_timestamp();
    let expected = i64::try_from(real_now + 3600).expect("fits");
    assert!(
        (date_seconds - expected).abs() <= 2,
        "Date {date} is an hour ahead"
    );
}
