//! Listing, deletion and presigned URLs against real servers: every page of
//! a listing with awkward keys, sizes and ETags exact; deletions in
//! 1,000-key requests that leave nothing listed, with per-key refusals (a
//! moto bucket policy) and failed requests reported key by key; presigned
//! GET and PUT URLs fetched with curl, an expired one refused.
//!
//! Presigned URLs are fetched from s3s-fs and Garage (where installed),
//! which verify their signatures and expiry: moto with authentication on
//! cannot serve them at all (see `serves_presigned`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use batchput::store::{Body, ListedObject, SentChecksum, Store};
use batchput::{ErrorKind, Uploader};

use crate::support::proxy::{Action, Match, Proxy, Rule};
use crate::support::{self, md5_hex, pattern, Kind, Server};

/// Keys no client gets right by accident.
const AWKWARD: &[&str] = &[
    "odd/a b",
    "odd/ünï cødé",
    "odd/a+b",
    "odd/%2F",
    "odd/&amp",
    "odd/<x>",
    "odd/ trailing ",
    "odd/q?x=1#f",
];

/// [`AWKWARD`], and a doubled slash where the server keeps it (s3s-fs
/// stores objects as files, and the file system merges `//`).
fn awkward(server: &Server) -> Vec<String> {
    let mut keys: Vec<String> = AWKWARD.iter().map(|k| k.to_string()).collect();
    if server.kind != Kind::S3s {
        keys.push("odd//double".into());
    }
    keys
}

/// Puts `objects` (key, size) with deterministic bodies, eight at a time.
/// Returns key -> md5 of the body.
fn put_all(store: &Store, objects: &[(String, usize)]) -> BTreeMap<String, (u64, String)> {
    std::thread::scope(|s| {
        for chunk in objects.chunks(objects.len().div_ceil(8).max(1)) {
            s.spawn(move || {
                for (i, (key, size)) in chunk.iter().enumerate() {
                    let data = pattern(*size, i as u64);
                    store
                        .put_object(key, Body::Bytes(&data), SentChecksum::None, i)
                        .unwrap_or_else(|e| panic!("put {key:?}: {e}"));
                }
            });
        }
    });
    objects
        .chunks(objects.len().div_ceil(8).max(1))
        .flat_map(|chunk| {
            chunk.iter().enumerate().map(|(i, (k, size))| {
                let md5 = md5_hex(&pattern(*size, i as u64));
                (k.clone(), (*size as u64, md5))
            })
        })
        .collect()
}

/// Asserts that `listed` is `want` (key -> size, MD5), naming the first
/// difference. s3s-fs lists no ETags (a gap of its own): there an ETag may
/// be empty, never wrong.
fn assert_same(server: &Server, listed: &[ListedObject], want: &BTreeMap<String, (u64, String)>) {
    let kind = server.kind;
    let mut keys: Vec<&str> = listed.iter().map(|o| o.key.as_str()).collect();
    keys.dedup();
    if keys.len() != listed.len() {
        let all: Vec<&str> = listed.iter().map(|o| o.key.as_str()).collect();
        let twice: Vec<_> = all
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .collect();
        panic!("{kind:?}: listed twice: {twice:?}");
    }
    for o in listed {
        let Some((size, md5)) = want.get(&o.key) else {
            panic!("{kind:?}: listed {:?}, never written", o.key);
        };
        assert_eq!(o.size, *size, "{kind:?}: size of {:?}", o.key);
        if !(kind == Kind::S3s && o.etag.is_empty()) {
            assert_eq!(&o.etag, md5, "{kind:?}: ETag of {:?}", o.key);
        }
    }
    assert_eq!(listed.len(), want.len(), "{kind:?}: objects listed");
}

#[test]
fn listing_pages_through_awkward_keys_with_exact_sizes_and_etags() {
    for server in support::servers() {
        let store = server.store();
        let mut objects: Vec<(String, usize)> = (0..1_010)
            .map(|i| (format!("many/{i:05}"), i % 37))
            .collect();
        objects.extend(awkward(&server).into_iter().map(|k| (k, 3)));
        objects.push(("elsewhere".into(), 1));
        let want = put_all(&store, &objects);

        let listed = store.list_objects("many/").unwrap();
        assert_eq!(listed.len(), 1_010, "{:?}", server.kind);
        let want_many: BTreeMap<_, _> = want
            .iter()
            .filter(|(k, _)| k.starts_with("many/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_same(&server, &listed, &want_many);
        let t = listed[0].last_modified.expect("LastModified");
        let age = t.elapsed().unwrap_or_default();
        assert!(age < Duration::from_secs(600), "{:?}: {t:?}", server.kind);

        // Pages of every size, the continuation tokens carrying awkward
        // keys (pages of two below "odd/"). Pages of 97 keep the whole
        // listing to 11 requests: moto's cost grows with every page.
        let whole = store.list_objects_with("", Some(97)).unwrap();
        assert_same(&server, &whole, &want);
        let odd = store.list_objects_with("odd/", Some(2)).unwrap();
        let mut keys: Vec<_> = odd.iter().map(|o| o.key.as_str()).collect();
        keys.sort();
        let mut expected = awkward(&server);
        expected.sort();
        assert_eq!(keys, expected, "{:?}: keys exact", server.kind);

        let (first, token) = store.list_objects_page("many/", None, Some(10)).unwrap();
        assert_eq!(first.len(), 10);
        let (second, _) = store
            .list_objects_page("many/", token.as_deref(), Some(10))
            .unwrap();
        assert_eq!(second[0].key, "many/00010", "{:?}", server.kind);
        assert!(store.list_objects("nothing-here/").unwrap().is_empty());
        let e = store.list_objects_page("", None, Some(0)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
    }
}

#[test]
fn deleting_2500_keys_takes_three_requests_and_leaves_nothing_listed() {
    for server in support::fast_servers() {
        let proxy = Proxy::start(&server.endpoint);
        let store = Store::new(&server.config_via(&proxy.endpoint())).unwrap();
        let odd = awkward(&server);
        let mut objects: Vec<(String, usize)> = (0..2_500 - odd.len())
            .map(|i| (format!("bulk/{i:05}"), 1))
            .collect();
        objects.extend(odd.iter().map(|k| (format!("bulk/{k}"), 2)));
        put_all(&store, &objects);
        let mut keys: Vec<String> = objects.iter().map(|(k, _)| k.clone()).collect();
        keys.push("bulk/never-existed".into());
        keys.push(keys[0].clone()); // deleted once
        proxy.reset_log();

        let report = store.delete_objects(&keys).unwrap();
        assert!(
            report.is_complete(),
            "{:?}: {:?}",
            server.kind,
            report.failed
        );
        assert!(report.error.is_none());
        assert_eq!(report.deleted.len(), 2_501, "{:?}", server.kind);
        let posts = proxy.count(|e| e.method == "POST" && e.query.starts_with("delete"));
        assert_eq!(posts, 3, "{:?}: DeleteObjects requests", server.kind);
        assert_eq!(proxy.count(|e| e.method == "DELETE"), 0);
        assert!(
            store.list_objects("bulk/").unwrap().is_empty(),
            "{:?}",
            server.kind
        );
    }
}

#[test]
fn a_failed_request_reports_its_keys_and_every_later_one() {
    let server = support::s3s();
    let proxy = Proxy::start(&server.endpoint);
    let store = Store::new(&server.config_via(&proxy.endpoint())).unwrap();
    let objects: Vec<(String, usize)> = (0..1_500).map(|i| (format!("f/{i:05}"), 1)).collect();
    put_all(&store, &objects);
    let keys: Vec<String> = objects.iter().map(|(k, _)| k.clone()).collect();
    let deletes = Match::method("POST").and_query("delete");
    proxy.add_rule(Rule::new(deletes.clone(), Action::Delay(Duration::ZERO)).times(1));
    proxy.add_rule(Rule::new(
        deletes,
        Action::Respond {
            status: 403,
            code: "AccessDenied".into(),
            message: "no deleting today".into(),
        },
    ));
    let report = store.delete_objects(&keys).unwrap();
    assert_eq!(report.deleted, keys[..1000]);
    assert_eq!(report.failed.len(), 500);
    assert!(report.failed.iter().all(|f| f.code == "AccessDenied"));
    assert!(report.failed[0].message.contains("no deleting today"));
    assert_eq!(report.error.as_ref().unwrap().code(), Some("AccessDenied"));
    let left = store.list_objects("f/").unwrap();
    let left: Vec<String> = left.into_iter().map(|o| o.key).collect();
    let failed: Vec<String> = report.failed.iter().map(|f| f.key.clone()).collect();
    assert_eq!(left, failed, "what the report calls failed is what is left");
}

/// Runs the repository's Python (moto's) with `script` and `args`.
fn python(script: &str, args: &[&str]) {
    let py = support::repo_root().join(".venv/bin/python");
    let out = Command::new(py)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Denies s3:DeleteObject under `keep/` in the server's bucket, with boto3.
fn deny_deletes_under_keep(server: &Server) {
    const SCRIPT: &str = r#"
import json, sys, boto3
endpoint, ak, sk, bucket = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ak,
                  aws_secret_access_key=sk, region_name="us-east-1")
s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17",
    "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",
                   "Resource": f"arn:aws:s3:::{bucket}/keep/*"}]}))
"#;
    python(
        SCRIPT,
        &[
            &server.endpoint,
            &server.access_key,
            &server.secret_key,
            &server.bucket,
        ],
    );
}

#[test]
fn a_key_the_server_refuses_is_reported_with_its_code_and_the_rest_deleted() {
    let Some(server) = support::moto() else {
        return;
    };
    let store = server.store();
    let objects: Vec<(String, usize)> = ["keep/a & b", "go/1", "keep/ü", "go/2 <x>"]
        .iter()
        .map(|k| (k.to_string(), 4))
        .collect();
    put_all(&store, &objects);
    deny_deletes_under_keep(&server);
    let keys: Vec<String> = objects.iter().map(|(k, _)| k.clone()).collect();
    let report = store.delete_objects(&keys).unwrap();
    assert_eq!(report.deleted, ["go/1", "go/2 <x>"]);
    let failed: Vec<_> = report.failed.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(failed, ["keep/a & b", "keep/ü"]);
    assert!(
        report.failed.iter().all(|f| f.code == "AccessDenied"),
        "{:?}",
        report.failed
    );
    assert!(!report.failed[0].message.is_empty());
    assert!(report.error.is_none(), "the request itself succeeded");
    let left: Vec<String> = store
        .list_objects("")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(left, ["keep/a & b", "keep/ü"]);

    // The uploader's delete_prefix says the same.
    let up = Uploader::new(server.config()).unwrap();
    let report = up.delete_prefix("keep/").unwrap();
    assert!(report.deleted.is_empty());
    assert_eq!(report.failed.len(), 2);
}

/// curl's status and body for `url`, `-X method`, with `upload` as the
/// body. `-g` keeps curl from globbing brackets; curl never normalises an
/// encoded path.
pub(crate) fn curl(method: &str, url: &str, upload: Option<&Path>) -> (u16, Vec<u8>) {
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-g", "-X", method, "-o"])
        .arg(out_file.path())
        .args(["-w", "%{http_code}"]);
    if let Some(f) = upload {
        cmd.arg("--upload-file").arg(f);
    }
    let out = cmd.arg(url).output().expect("running curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    (status, std::fs::read(out_file.path()).unwrap())
}

/// moto with authentication on cannot serve a presigned URL at all: its
/// IAM check reads the Authorization header, which a presigned request has
/// none of, and it answers 500 (KeyError 'HTTP_AUTHORIZATION'). Nor does
/// moto check signatures or expiry of presigned URLs when auth is off.
fn serves_presigned(server: &Server) -> bool {
    server.kind != Kind::Moto
}

#[test]
fn presigned_get_and_put_urls_work_with_a_plain_http_client() {
    for server in support::servers().iter().filter(|s| serves_presigned(s)) {
        let up = Uploader::new(server.config()).unwrap();
        let store = up.store();
        let key = "pre signed/ünï+%41&<x>.bin";
        let data = pattern(100_000, 5);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("body");
        std::fs::write(&file, &data).unwrap();

        let put = up.presign("PUT", key, Duration::from_secs(300)).unwrap();
        assert!(put.contains("X-Amz-Signature="), "{put}");
        assert!(!put.contains("x-amz-content-sha256"), "{put}");
        let (status, body) = curl("PUT", &put, Some(&file));
        assert_eq!(
            status,
            200,
            "{:?}: {}",
            server.kind,
            String::from_utf8_lossy(&body)
        );
        assert!(store.get_object(key).unwrap() == data, "{:?}", server.kind);

        let get = up.presign("get", key, Duration::from_secs(3600)).unwrap();
        let (status, body) = curl("GET", &get, None);
        assert_eq!(
            status,
            200,
            "{:?}: {}",
            server.kind,
            String::from_utf8_lossy(&body)
        );
        assert!(body == data, "{:?}: bytes differ", server.kind);

        {
            // The server checks what it signed: another method, or a
            // changed signature, is refused.
            let (status, _) = curl("PUT", &get, Some(&file));
            assert_eq!(status, 403, "{:?}: a GET URL used to PUT", server.kind);
            // (Another last hex digit: '0' unless it already is one.)
            let last = if get.ends_with('0') { '1' } else { '0' };
            let tampered = format!("{}{last}", &get[..get.len() - 1]);
            let (status, _) = curl("GET", &tampered, None);
            assert_eq!(status, 403, "{:?}: a tampered signature", server.kind);
        }
    }
}

#[test]
fn an_expired_presigned_url_is_refused() {
    for server in support::servers().iter().filter(|s| serves_presigned(s)) {
        let store = server.store();
        store
            .put_object("soon", Body::Bytes(b"gone"), SentChecksum::None, 0)
            .unwrap();
        let url = store
            .presign("GET", "soon", Duration::from_secs(1))
            .unwrap();
        assert!(url.contains("X-Amz-Expires=1&"), "{url}");
        std::thread::sleep(Duration::from_millis(2_100));
        let (status, body) = curl("GET", &url, None);
        let text = String::from_utf8_lossy(&body);
        assert!(
            matches!(status, 400 | 403),
            "{:?}: {status} {text}",
            server.kind
        );
        // S3 and s3s-fs: "Request has expired"; Garage: "Date is too old".
        let said = text.to_lowercase();
        assert!(
            said.contains("expired") || said.contains("too old"),
            "{:?}: {text}",
            server.kind
        );
        assert!(!text.contains("gone"), "{:?}: {text}", server.kind);
    }
}

#[test]
fn presign_refuses_an_expiry_out_of_range_and_other_methods() {
    let server = support::s3s();
    let store = server.store();
    for bad in [
        Duration::ZERO,
        Duration::from_millis(999),
        Duration::from_secs(604_801),
    ] {
        let e = store.presign("GET", "k", bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e}");
        assert!(e.to_string().contains("1 second to 7 days"), "{e}");
    }
    let week = store
        .presign("GET", "k", Duration::from_secs(604_800))
        .unwrap();
    assert!(week.contains("X-Amz-Expires=604800"), "{week}");
    let e = store
        .presign("DELETE", "k", Duration::from_secs(60))
        .unwrap_err();
    assert!(e.to_string().contains("use GET or PUT"), "{e}");
    let e = store
        .presign("PUT", "a/../b", Duration::from_secs(60))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = store
        .presign("GET", "", Duration::from_secs(60))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

#[test]
fn the_uploader_lists_deletes_a_prefix_and_reports_exactly() {
    for server in support::fast_servers() {
        let up = Uploader::new(server.config()).unwrap();
        let objects: Vec<(String, usize)> = (0..30)
            .map(|i| (format!("dp/{i:02}"), i))
            .chain([("dpx".to_string(), 1), ("other/1".to_string(), 1)])
            .collect();
        put_all(up.store(), &objects);
        let listed = up.list("dp/").unwrap();
        assert_eq!(listed.len(), 30, "{:?}", server.kind);
        assert_eq!(listed[5].size, 5);
        let report = up.delete_prefix("dp/").unwrap();
        assert_eq!(report.deleted.len(), 30);
        assert!(report.is_complete());
        let left: Vec<String> = up.list("").unwrap().into_iter().map(|o| o.key).collect();
        assert_eq!(left, ["dpx", "other/1"], "{:?}", server.kind);
        let report = up.delete_prefix("dp/").unwrap();
        assert!(report.deleted.is_empty() && report.failed.is_empty());
    }
}
