//! Listing, deleting a prefix and presigning through the C ABI: bp_list
//! pages lazily and ends with BP_DONE, bp_delete_prefix reports a partial
//! failure by key, bp_presign sizes its buffer like snprintf.

use super::*;

use batchput::store::{Body, SentChecksum};

fn object_out() -> bp_object {
    bp_object {
        struct_size: std::mem::size_of::<bp_object>(),
        key: null(),
        etag: null(),
        size: 0,
        last_modified: 0,
    }
}

/// Every object under `prefix`, read with bp_list_next.
fn list_all(up: *mut bp_uploader, prefix: &str) -> Vec<(String, u64, String, i64)> {
    let mut list = null_mut();
    unsafe {
        assert_eq!(
            bp_list_open(up, c(prefix).as_ptr(), &mut list),
            bp_status::BP_OK
        );
        let mut out = Vec::new();
        loop {
            let mut o = object_out();
            let st = bp_list_next(list, &mut o);
            if st == bp_status::BP_DONE {
                // And again: the end stays the end.
                assert_eq!(bp_list_next(list, &mut o), bp_status::BP_DONE);
                break;
            }
            assert_eq!(st, bp_status::BP_OK, "{}", last_error());
            assert_eq!(o.struct_size, std::mem::size_of::<bp_object>());
            out.push((
                report_str(o.key).unwrap(),
                o.size,
                report_str(o.etag).unwrap(),
                o.last_modified,
            ));
        }
        bp_list_free(list);
        out
    }
}

#[test]
fn a_listing_pages_through_every_object_and_ends_with_done() {
    let server = support::s3s();
    let store = server.store();
    let mut keys: Vec<String> = (0..1_003).map(|i| format!("c/{i:04}")).collect();
    keys.push("c/ünï +&<x>".into());
    for (i, k) in keys.iter().enumerate() {
        let data = pattern(i % 5, 1);
        store
            .put_object(k, Body::Bytes(&data), SentChecksum::None, 0)
            .unwrap();
    }
    store
        .put_object("d/other", Body::Bytes(b"x"), SentChecksum::None, 0)
        .unwrap();
    let up = uploader_for(&server, &[]);
    let listed = list_all(up, "c/");
    let got: Vec<&str> = listed.iter().map(|o| o.0.as_str()).collect();
    assert_eq!(got, keys.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(listed[3].1, 3);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - listed[0].3).abs() < 600, "{listed:?}");
    assert!(list_all(up, "nothing/").is_empty());
    unsafe {
        // Arguments: NULLs and a struct_size of 0 are refused.
        let mut list = null_mut();
        assert_fails(
            bp_list_open(up, null(), &mut list),
            bp_status::BP_INVALID_ARGUMENT,
            &["bp_list_open", "'prefix'"],
        );
        assert_eq!(
            bp_list_open(up, c("").as_ptr(), &mut list),
            bp_status::BP_OK
        );
        let mut o = object_out();
        o.struct_size = 0;
        assert_fails(
            bp_list_next(list, &mut o),
            bp_status::BP_INVALID_ARGUMENT,
            &["struct_size", "bp_object"],
        );
        assert_fails(
            bp_list_next(list, null_mut()),
            bp_status::BP_INVALID_ARGUMENT,
            &["'out'"],
        );
        bp_list_free(list);
        bp_list_free(null_mut());
        bp_uploader_free(up);
    }
}

#[test]
fn a_listing_that_cannot_reach_the_server_says_so() {
    let up = offline_uploader();
    unsafe {
        let mut list = null_mut();
        assert_eq!(
            bp_list_open(up, c("").as_ptr(), &mut list),
            bp_status::BP_OK
        );
        let mut o = object_out();
        assert_fails(
            bp_list_next(list, &mut o),
            bp_status::BP_NETWORK,
            &["bp_list_next", "ListObjectsV2"],
        );
        bp_list_free(list);
        bp_uploader_free(up);
    }
}

#[test]
fn delete_prefix_deletes_and_counts_and_names_what_it_could_not() {
    let server = support::s3s();
    let store = server.store();
    for i in 0..12 {
        store
            .put_object(
                &format!("del/{i}"),
                Body::Bytes(b"x"),
                SentChecksum::None,
                0,
            )
            .unwrap();
    }
    store
        .put_object("keep", Body::Bytes(b"x"), SentChecksum::None, 0)
        .unwrap();
    let up = uploader_for(&server, &[]);
    unsafe {
        let mut deleted = 99;
        assert_eq!(
            bp_delete_prefix(up, c("del/").as_ptr(), &mut deleted),
            bp_status::BP_OK,
            "{}",
            last_error()
        );
        assert_eq!(deleted, 12);
        assert!(list_all(up, "del/").is_empty());
        assert_eq!(list_all(up, "").len(), 1);
        bp_uploader_free(up);
    }

    // Through a proxy that refuses every DeleteObjects: nothing deleted,
    // the first key and the count named.
    use crate::support::proxy::{Action, Match, Proxy, Rule};
    let proxy = Proxy::start(&server.endpoint);
    proxy.add_rule(Rule::new(
        Match::method("POST").and_query("delete"),
        Action::Respond {
            status: 403,
            code: "AccessDenied".into(),
            message: "not today".into(),
        },
    ));
    let up = uploader_for(&server, &[("endpoint", &proxy.endpoint())]);
    unsafe {
        let mut deleted = 99;
        assert_fails(
            bp_delete_prefix(up, c("").as_ptr(), &mut deleted),
            bp_status::BP_SERVER,
            &[
                "1 of 1 objects not deleted",
                "'keep'",
                "AccessDenied",
                "not today",
            ],
        );
        assert_eq!(deleted, 0, "written on a partial failure too");
        bp_uploader_free(up);
    }
}

#[test]
fn presign_fills_the_buffer_or_says_how_big_it_must_be() {
    let server = support::s3s();
    server
        .store()
        .put_object("p/ü x", Body::Bytes(b"presigned"), SentChecksum::None, 0)
        .unwrap();
    let up = uploader_for(&server, &[]);
    unsafe {
        let mut need = 0usize;
        let st = bp_presign(
            up,
            c("GET").as_ptr(),
            c("p/ü x").as_ptr(),
            60,
            null_mut(),
            0,
            &mut need,
        );
        assert_fails(st, bp_status::BP_BUFFER_TOO_SMALL, &["bytes"]);
        let mut buf = vec![0 as c_char; need - 1];
        let mut again = 0usize;
        let st = bp_presign(
            up,
            c("GET").as_ptr(),
            c("p/ü x").as_ptr(),
            60,
            buf.as_mut_ptr(),
            buf.len(),
            &mut again,
        );
        assert_eq!((st, again), (bp_status::BP_BUFFER_TOO_SMALL, need));
        assert_eq!(buf[0], 0, "untouched when too small");
        let mut buf = vec![0 as c_char; need];
        let st = bp_presign(
            up,
            c("get").as_ptr(),
            c("p/ü x").as_ptr(),
            60,
            buf.as_mut_ptr(),
            buf.len(),
            &mut again,
        );
        assert_eq!(st, bp_status::BP_OK, "{}", last_error());
        let url = CStr::from_ptr(buf.as_ptr()).to_str().unwrap().to_string();
        assert_eq!(url.len() + 1, need);
        let (status, body) = crate::objects::curl("GET", &url, None);
        assert_eq!((status, body.as_slice()), (200, &b"presigned"[..]));

        for (method, secs, want, words) in [
            (
                "GET",
                0,
                bp_status::BP_INVALID_ARGUMENT,
                &["1 second to 7 days"][..],
            ),
            (
                "GET",
                604_801,
                bp_status::BP_INVALID_ARGUMENT,
                &["604800"][..],
            ),
            (
                "POST",
                60,
                bp_status::BP_INVALID_ARGUMENT,
                &["use GET or PUT"][..],
            ),
        ] {
            let st = bp_presign(
                up,
                c(method).as_ptr(),
                c("k").as_ptr(),
                secs,
                buf.as_mut_ptr(),
                buf.len(),
                null_mut(),
            );
            assert_fails(st, want, words);
        }
        assert_fails(
            bp_presign(
                up,
                c("GET").as_ptr(),
                null(),
                60,
                buf.as_mut_ptr(),
                1,
                null_mut(),
            ),
            bp_status::BP_INVALID_ARGUMENT,
            &["'key'"],
        );
        assert_fails(
            bp_presign(
                up,
                c("GET").as_ptr(),
                c("k").as_ptr(),
                60,
                null_mut(),
                5,
                null_mut(),
            ),
            bp_status::BP_INVALID_ARGUMENT,
            &["'buf' is NULL"],
        );
        bp_uploader_free(up);
    }
}
