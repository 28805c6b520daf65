//! Garage: endpoint failover across the nodes of a 3-node cluster, node
//! loss mid-batch, and the janitor against a server that keeps real
//! upload dates. (The store, engine and journal suites also run against a
//! single Garage node through `support::servers()`.)

use std::collections::HashSet;
use std::time::{Duration, Instant};

use batchput::{ErrorKind, FileState, JobState, Uploader};

use crate::support::{self, finish, make_files, MIB};

fn batch_specs() -> Vec<(String, usize)> {
    let mut list: Vec<(String, usize)> = (0..60)
        .map(|i| (format!("nodes/small-{i:02}"), 512 * 1024 + i))
        .collect();
    list.push(("nodes/big-1".into(), 16 * MIB));
    list.push(("nodes/big-2".into(), 16 * MIB + 7));
    list
}

#[test]
fn a_batch_survives_the_loss_of_a_node_through_the_other_endpoints() {
    let Some(mut server) = support::garage_cluster() else {
        return;
    };
    let cluster = server.garage().unwrap();
    let endpoints: Vec<String> = (0..3).map(|i| cluster.endpoint(i)).collect();
    let files = make_files(&batch_specs());
    let cfg = server
        .config()
        .endpoint(&endpoints.join(","))
        .part_size(5 * MIB as u64)
        .multipart_threshold(5 * MIB as u64)
        .workers(6)
        .rate_limit(20 * MIB as u64);
    let up = Uploader::new(cfg).unwrap();
    let job = up.start(&files.batch()).unwrap();
    let t = Instant::now();
    while job.progress().files_done < 10 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{:?}",
            job.progress()
        );
        assert!(!job.state().is_finished(), "{:?}", job.error());
        std::thread::sleep(Duration::from_millis(20));
    }
    server.garage().unwrap().kill(1);
    let p = finish(&job, 180);
    assert_eq!(p.state, JobState::Succeeded, "{:?}", p.error);

    // Every object reads back intact through node 3.
    let via_node3 = batchput::store::Store::new(&server.config().endpoint(&endpoints[2])).unwrap();
    files.verify_all(&via_node3);
    // No upload left open, asked of node 3 too.
    let open = support::listed_open_uploads(&via_node3);
    assert!(open.is_empty(), "uploads left open: {open:?}");
    let served: HashSet<String> = job.files().into_iter().filter_map(|r| r.endpoint).collect();
    assert!(served.len() >= 2, "work spread over the nodes: {served:?}");
    assert!(served.iter().all(|e| endpoints.contains(e)));
}

#[test]
fn losing_the_only_endpoint_fails_clearly_and_cleanup_finds_the_leftovers() {
    let Some(mut server) = support::garage() else {
        return;
    };
    let endpoint = server.endpoint.clone();
    let files = make_files(&[("lost/big".to_string(), 40 * MIB)]);
    let cfg = server
        .config()
        .part_size(5 * MIB as u64)
        .multipart_threshold(5 * MIB as u64)
        .workers(2)
        .retries(3)
        .rate_limit(10 * MIB as u64);
    let up = Uploader::new(cfg).unwrap();
    let job = up.start(&files.batch()).unwrap();
    while job.progress().parts_done < 1 {
        assert!(!job.state().is_finished(), "{:?}", job.error());
        std::thread::sleep(Duration::from_millis(20));
    }
    server.garage().unwrap().kill(0);
    let p = finish(&job, 120);
    assert_eq!(p.state, JobState::Failed);
    let e = p.error.unwrap();
    assert!(
        matches!(e.kind(), ErrorKind::Network | ErrorKind::Timeout),
        "{e}"
    );
    assert!(
        e.to_string().contains(&endpoint),
        "the error names the endpoint: {e}"
    );
    assert!(
        e.to_string().contains("could not abort"),
        "the abort could not reach the node: {e}"
    );
    // Its own error failed the job, and its upload is still open on the
    // dead node: the report says so, by id, rather than "failed".
    let report = &job.files()[0];
    assert_eq!(report.state, FileState::AbortFailed, "{:?}", report.error);
    let open_id = report.upload_id.clone().expect("the open upload's id");
    assert!(e.to_string().contains(&open_id), "{e}");

    server.garage().unwrap().restart(0);
    let listed = server.store().list_multipart_uploads("").unwrap();
    assert_eq!(
        listed.len(),
        1,
        "the dead node kept the upload open: {listed:?}"
    );
    assert_eq!(listed[0].upload_id, open_id, "the report named it");
    assert_eq!(up.cleanup("", Duration::ZERO).unwrap(), 1);
    assert!(server
        .store()
        .list_multipart_uploads("")
        .unwrap()
        .is_empty());
}

#[test]
fn the_janitor_keeps_fresh_uploads_on_a_server_with_real_dates() {
    let Some(server) = support::garage() else {
        return;
    };
    crate::journal::janitor_case(&server);
}
