//! The coordinator's OpenAPI document: served without a token, generated from the code,
//! and holding exactly the routes the router serves, with security and error bodies.

use std::collections::BTreeSet;

use actix_web::http::StatusCode;
use serde_json::Value;

use crate::helpers::{call, Backend, TestCluster};

/// The fields a schema requires.
fn required(schema: &Value) -> BTreeSet<&str> {
    schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

#[actix_rt::test]
async fn the_openapi_document_describes_every_route_of_the_router() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 0).await;
    let answer = call(
        &awc::Client::default(),
        actix_web::http::Method::GET,
        &cluster.url("/api/v1/openapi.json"),
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let doc = answer.body;
    // The index points at it.
    let index = call(
        &awc::Client::default(),
        actix_web::http::Method::GET,
        &cluster.url("/"),
        None,
    )
    .await;
    assert_eq!(
        index.body["links"]["openapi"], "/api/v1/openapi.json",
        "{index:?}"
    );
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );

    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "put", "post", "delete", "head", "patch"].contains(&k.as_str()))
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    let routed: BTreeSet<(String, String)> = vigil::http::coordinator::endpoints()
        .into_iter()
        .map(|(method, path)| (method.as_str().to_lowercase(), path.to_string()))
        .collect();
    assert_eq!(
        routed.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "routes missing from the document"
    );
    assert_eq!(
        documented.difference(&routed).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented routes the router does not serve"
    );

    // Bearer tokens, required unless an operation says otherwise; errors as JSON bodies.
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(doc["security"], serde_json::json!([{"bearer": []}]));
    let error = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(
        required(error),
        BTreeSet::from(["code", "error"]),
        "{error}"
    );
    let open = ["/", "/healthz", "/api/v1/openapi.json"];
    for (method, path) in &routed {
        let operation = &doc["paths"][path][method];
        let responses = operation["responses"].as_object().unwrap();
        let is_open = open.contains(&path.as_str());
        assert_eq!(responses.contains_key("401"), !is_open, "{method} {path}");
        if is_open {
            assert_eq!(
                operation["security"],
                serde_json::json!([{}]),
                "{method} {path}"
            );
        }
        for code in ["400", "404", "500"] {
            let body = &responses[code]["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(
                body, "#/components/schemas/ErrorBody",
                "{method} {path} {code}"
            );
        }
        assert!(
            responses.keys().any(|c| c.starts_with('2')),
            "{method} {path} documents no success"
        );
    }
    // The bulk create: its own body limit, all or nothing, and the refused devices
    // listed in the error body (an optional field every other error leaves out).
    let bulk = &doc["paths"]["/api/v1/devices/bulk"]["post"];
    assert!(
        bulk["responses"]["413"]["description"]
            .as_str()
            .unwrap()
            .contains("4 MiB"),
        "{bulk}"
    );
    assert!(
        bulk["description"]
            .as_str()
            .unwrap()
            .contains("none is created"),
        "{bulk}"
    );
    assert_eq!(
        bulk["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/NewDevicesBody"
    );
    assert_eq!(
        doc["components"]["schemas"]["NewDevicesBody"]["properties"]["devices"]["maxItems"],
        10_000
    );
    assert_eq!(
        error["properties"]["errors"]["items"]["$ref"],
        "#/components/schemas/ItemError"
    );
    assert_eq!(
        required(&doc["components"]["schemas"]["ItemError"]),
        BTreeSet::from(["code", "error", "index"])
    );
    // Operation ids are unique, as OpenAPI requires.
    let mut ids = BTreeSet::new();
    for (method, path) in &routed {
        let id = doc["paths"][path][method]["operationId"].as_str().unwrap();
        assert!(ids.insert(id.to_string()), "operationId {id} twice");
    }
    // Every schema an operation refers to is in the document.
    let text = doc.to_string();
    for reference in text.split("\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap();
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{name} is referred to but not defined"
        );
    }
    let _: &Value = &doc;
}
