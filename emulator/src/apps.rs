//! Apps API handlers for reading, listing, activating, deactivating and
//! deleting apps: `/api/v1/apps` and `/api/v1/apps/{appId}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::errors::{ApiResult, OktaError};
use crate::pagination::{LinkTarget, QueryParams, parse_limit};
use crate::state::{App, AppStatus};
use crate::{Shared, app_json};

/// Okta's internal type name in 404 bodies for apps.
pub(crate) const APP_TYPE_NAME: &str = "AppInstance";

/// `GET /api/v1/apps`: lists apps in creation order.
///
/// `q` keeps apps whose name or label starts with it, ignoring case.
/// `filter` accepts one `eq` expression on `id`, `status` or `name`, and
/// both may be combined.
pub(crate) async fn list(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> ApiResult {
    let params = QueryParams::parse(raw.as_deref());
    let limit = parse_limit(params.get("limit"))?;
    let after = params.get("after");
    let prefix = params.get("q").map(str::to_lowercase);
    let filter = params.get("filter").map(parse_filter).transpose()?;

    let org = shared.org();
    let page = org.page_apps(after, limit, |app| {
        let matches_prefix = prefix.as_deref().is_none_or(|prefix| {
            app.label.to_lowercase().starts_with(prefix) || "oidc_client".starts_with(prefix)
        });
        matches_prefix && filter.as_ref().is_none_or(|filter| filter.matches(app))
    })?;
    let org_url = org.org_url();
    let body: Vec<Value> = page
        .apps
        .iter()
        .map(|app| app_json::application(app, org_url))
        .collect();

    let mut response = Json(body).into_response();
    let search = [("q", params.get("q")), ("filter", params.get("filter"))]
        .into_iter()
        .filter_map(|(name, value)| value.map(|value| (name, value)))
        .collect();
    let links = LinkTarget {
        org_url,
        path: "/api/v1/apps",
        search,
        after,
        limit,
    };
    let next_after = page.has_more.then(|| page.apps.last()).flatten();
    links.append_headers(
        response.headers_mut(),
        next_after.map(|app| app.id.as_str()),
    );
    Ok(response)
}

/// A parsed `filter` expression: `field eq "value"`.
#[derive(Debug, PartialEq, Eq)]
struct Filter {
    field: FilterField,
    value: String,
}

#[derive(Debug, PartialEq, Eq)]
enum FilterField {
    Id,
    Status,
    Name,
}

impl Filter {
    fn matches(&self, app: &App) -> bool {
        match self.field {
            FilterField::Id => app.id == self.value,
            FilterField::Status => app.status.as_str() == self.value,
            FilterField::Name => self.value == "oidc_client",
        }
    }
}

/// Parses `field eq "value"`. Other fields Okta supports, such as
/// `credentials.signing.kid` and `user.id`, and other operators are
/// rejected with E0000031.
fn parse_filter(expression: &str) -> Result<Filter, OktaError> {
    let invalid = || {
        OktaError::invalid_search().with_cause(format!(
            "The emulator supports only filter=FIELD eq \"VALUE\" with FIELD id, status or name, not '{expression}'."
        ))
    };
    let (field, rest) = expression
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(invalid)?;
    let value = rest
        .trim_start()
        .strip_prefix("eq")
        .map(str::trim)
        .and_then(|quoted| quoted.strip_prefix('"'))
        .and_then(|quoted| quoted.strip_suffix('"'))
        .ok_or_else(invalid)?;
    let field = match field {
        "id" => FilterField::Id,
        "status" => FilterField::Status,
        "name" => FilterField::Name,
        _ => return Err(invalid()),
    };
    Ok(Filter {
        field,
        value: value.to_owned(),
    })
}

/// `GET /api/v1/apps/{appId}`.
pub(crate) async fn get(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
) -> ApiResult {
    let org = shared.org();
    let app = org.app(&app_id).ok_or_else(|| app_not_found(&app_id))?;
    Ok(Json(app_json::application(app, org.org_url())).into_response())
}

/// `POST /api/v1/apps/{appId}/lifecycle/activate`: returns 200 `{}`, also
/// when the app is already ACTIVE.
pub(crate) async fn activate(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
) -> ApiResult {
    set_status(&shared, &app_id, AppStatus::Active)
}

/// `POST /api/v1/apps/{appId}/lifecycle/deactivate`: returns 200 `{}`,
/// also when the app is already INACTIVE.
pub(crate) async fn deactivate(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
) -> ApiResult {
    set_status(&shared, &app_id, AppStatus::Inactive)
}

fn set_status(shared: &Shared, app_id: &str, status: AppStatus) -> ApiResult {
    let now = shared.now();
    let mut org = shared.org();
    let app = org.app_mut(app_id).ok_or_else(|| app_not_found(app_id))?;
    if app.status != status {
        app.status = status;
        app.last_updated = now;
        tracing::info!(app_id = %app_id, status = status.as_str(), "app status changed");
    }
    Ok(Json(json!({})).into_response())
}

/// `DELETE /api/v1/apps/{appId}`: deletes an INACTIVE app with its keys and
/// grants and returns 204; an ACTIVE app gets 403 E0000056.
pub(crate) async fn delete(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
) -> ApiResult {
    let mut org = shared.org();
    let app = org.app(&app_id).ok_or_else(|| app_not_found(&app_id))?;
    if app.status == AppStatus::Active {
        return Err(OktaError::delete_active_app().into());
    }
    org.remove_app(&app_id);
    tracing::info!(app_id = %app_id, "app deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Builds 404 E0000007 for an unknown app id.
pub(crate) fn app_not_found(app_id: &str) -> OktaError {
    OktaError::resource_not_found(app_id, APP_TYPE_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_parses_eq_expressions() {
        assert_eq!(
            parse_filter("status eq \"ACTIVE\""),
            Ok(Filter {
                field: FilterField::Status,
                value: "ACTIVE".into()
            })
        );
        assert_eq!(
            parse_filter("  name   eq  \"oidc_client\" "),
            Ok(Filter {
                field: FilterField::Name,
                value: "oidc_client".into()
            })
        );
    }

    #[test]
    fn filter_rejects_other_forms() {
        for expression in [
            "status ne \"ACTIVE\"",
            "user.id eq \"00u1\"",
            "status eq ACTIVE",
            "status",
            "",
        ] {
            let error = parse_filter(expression).expect_err(expression);
            assert_eq!(error.code(), "E0000031", "{expression}");
        }
    }
}
