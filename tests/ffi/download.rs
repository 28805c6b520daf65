//! Downloads through the C ABI: bp_download_start and bp_download_prefix
//! called from Rust (bad arguments, bytes, bp_file_report.verified, pause
//! and bp_resume), and the C `download` example as a child process, also
//! under valgrind.

use super::*;

use batchput::store::{Body, SentChecksum};

fn put(server: &Server, key: &str, data: &[u8]) {
    server
        .store()
        .put_object(key, Body::Bytes(data), SentChecksum::None, 0)
        .unwrap();
}

fn wait_ok(job: *mut bp_job) -> bp_progress {
    let st = unsafe { bp_job_wait(job, 60_000) };
    assert_eq!(st, bp_status::BP_OK, "{}", job_error(job));
    poll(job)
}

#[test]
fn bp_download_start_writes_the_bytes_and_says_how_they_were_checked() {
    let server = support::s3s();
    let small = pattern(3000, 31);
    let big = pattern(6 * MIB + 7, 32);
    put(&server, "ffi/dl/small", &small);
    put(&server, "ffi/dl/big one", &big);
    let dir = tempfile::tempdir().unwrap();
    let up = uploader_for(
        &server,
        &[("part_size", "5MiB"), ("multipart_threshold", "5MiB")],
    );
    let entries = vec![
        (dir.path().join("s"), "ffi/dl/small".to_string()),
        (dir.path().join("sub/b"), "ffi/dl/big one".to_string()),
    ];
    let b = batch_of(&entries);
    let mut job = null_mut();
    unsafe {
        assert_eq!(bp_download_start(up, b, &mut job), bp_status::BP_OK);
        bp_batch_free(b);
        let p = wait_ok(job);
        assert_eq!(p.state, bp_job_state::BP_JOB_SUCCEEDED);
        assert_eq!(p.files_done, 2);
        assert_eq!(p.bytes_done, (small.len() + big.len()) as u64);
        for (i, data) in [&small, &big].into_iter().enumerate() {
            let r = report(job, i);
            assert_eq!(r.state, bp_file_state::BP_FILE_COMPLETED);
            assert_eq!(r.verified, bp_verified::BP_VERIFIED_MD5, "file {i}");
            assert_eq!(etag(&r), md5_hex(data));
            assert_eq!(report_str(r.key).unwrap(), entries[i].1);
            assert_eq!(std::fs::read(&entries[i].0).unwrap(), *data);
        }
        // A caller built before `verified` gets everything else, and the
        // bytes where `verified` would be stay as they were.
        let mut r = report_out();
        r.struct_size = std::mem::offset_of!(bp_file_report, verified);
        r.verified = bp_verified::BP_VERIFIED_SIZE;
        assert_eq!(bp_job_file(job, 0, &mut r), bp_status::BP_OK);
        assert_eq!(
            r.struct_size,
            std::mem::offset_of!(bp_file_report, verified)
        );
        assert_eq!(r.verified, bp_verified::BP_VERIFIED_SIZE);
        assert_eq!(r.state, bp_file_state::BP_FILE_COMPLETED);
        bp_job_free(job);
        bp_uploader_free(up);
    }
}

#[test]
fn bp_download_prefix_maps_keys_below_the_directory_and_refuses_escapes() {
    let server = support::s3s();
    put(&server, "ffi/pre/a b.txt", b"alpha");
    put(&server, "ffi/pre/d/e", &pattern(70_000, 33));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    let up = uploader_for(&server, &[]);
    let pre = c("ffi/pre/");
    let d = c(dest.to_str().unwrap());
    let journal = dir.path().join("j");
    let j = c(journal.to_str().unwrap());
    unsafe {
        // Bad arguments are named; the output is untouched.
        let sentinel = 0x8 as *mut bp_job;
        let mut job = sentinel;
        use bp_status::BP_INVALID_ARGUMENT as INVALID;
        assert_fails(
            bp_download_prefix(null_mut(), pre.as_ptr(), d.as_ptr(), null(), &mut job),
            INVALID,
            &["bp_download_prefix", "'up'"],
        );
        assert_fails(
            bp_download_prefix(up, null(), d.as_ptr(), null(), &mut job),
            INVALID,
            &["'prefix'"],
        );
        assert_fails(
            bp_download_prefix(up, pre.as_ptr(), c("").as_ptr(), null(), &mut job),
            INVALID,
            &["'dir'", "empty"],
        );
        assert_fails(
            bp_download_prefix(up, pre.as_ptr(), d.as_ptr(), null(), null_mut()),
            INVALID,
            &["'out'"],
        );
        assert_fails(
            bp_download_start(up, null(), &mut job),
            INVALID,
            &["bp_download_start", "'batch'"],
        );
        assert_fails(
            bp_download_prefix(up, c("ffi/none/").as_ptr(), d.as_ptr(), null(), &mut job),
            bp_status::BP_INVALID_INPUT,
            &["no object under 'ffi/none/'"],
        );
        assert_eq!(job, sentinel);

        assert_eq!(
            bp_download_prefix(up, pre.as_ptr(), d.as_ptr(), j.as_ptr(), &mut job),
            bp_status::BP_OK,
            "{}",
            last_error()
        );
        let p = wait_ok(job);
        assert_eq!(
            p.state,
            bp_job_state::BP_JOB_SUCCEEDED,
            "{}",
            job_error(job)
        );
        assert_eq!(std::fs::read(dest.join("a b.txt")).unwrap(), b"alpha");
        assert_eq!(
            std::fs::read(dest.join("d/e")).unwrap(),
            pattern(70_000, 33)
        );
        assert_eq!(report(job, 0).verified, bp_verified::BP_VERIFIED_MD5);
        assert!(journal.exists());
        bp_job_free(job);
        bp_uploader_free(up);
    }
    // A key that would land outside the directory refuses the job. s3s-fs
    // keeps objects as files and cannot hold such a key; moto can.
    let Some(moto) = support::moto() else {
        return;
    };
    put(&moto, "ffi/pre/ok", b"fine");
    put(&moto, "ffi/pre/x/../../../escaped", b"evil");
    let up = uploader_for(&moto, &[]);
    let other = dir.path().join("other");
    let mut job = 0x8 as *mut bp_job;
    unsafe {
        assert_fails(
            bp_download_prefix(
                up,
                pre.as_ptr(),
                c(other.to_str().unwrap()).as_ptr(),
                null(),
                &mut job,
            ),
            bp_status::BP_INVALID_INPUT,
            &["ffi/pre/x/../../../escaped", "cannot be downloaded"],
        );
        assert_eq!(job, 0x8 as *mut bp_job);
        bp_uploader_free(up);
    }
    assert!(!other.exists());
    assert!(!dir.path().parent().unwrap().join("escaped").exists());
}

/// The C example downloads `KEY=DEST` pairs and a prefix; under valgrind
/// too when it is installed.
#[test]
fn c_download_example_downloads_a_batch_and_a_prefix() {
    let server = support::s3s();
    let bin = tempfile::tempdir().unwrap();
    build_examples(bin.path());
    let data = [
        ("c-dl/one", pattern(1000, 41)),
        ("c-dl/sub/two three", pattern(6 * MIB + 1, 42)),
        ("c-dl/empty", Vec::new()),
    ];
    for (k, d) in &data {
        put(&server, k, d);
    }
    let opts = [("part_size", "5MiB"), ("multipart_threshold", "5MiB")];
    let valgrind = Command::new("valgrind").arg("--version").output().is_ok();
    let run_example = |wrap: bool, args: Vec<String>| -> String {
        let mut cmd = if wrap {
            let mut v = Command::new("valgrind");
            v.args([
                "--leak-check=full",
                "--show-leak-kinds=definite,indirect,possible",
                "--errors-for-leak-kinds=definite,indirect,possible",
                "--error-exitcode=99",
            ])
            .arg(format!(
                "--suppressions={}",
                repo().join("examples-c/valgrind.supp").display()
            ))
            .arg(bin.path().join("download"));
            v
        } else {
            Command::new(bin.path().join("download"))
        };
        let out = run(cmd.args(args), Duration::from_secs(300));
        let (so, se) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{so}\n{se}");
        if wrap {
            assert!(se.contains("ERROR SUMMARY: 0 errors"), "{se}");
            assert!(se.contains("possibly lost: 0 bytes"), "{se}");
        }
        so
    };
    let mut modes = vec![false];
    if valgrind {
        modes.push(true);
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "valgrind is required on CI"
        );
        eprintln!("SKIPPED under valgrind: valgrind is not installed");
    }
    for wrap in modes {
        let out = tempfile::tempdir().unwrap();
        // A batch of KEY=DEST pairs.
        let mut args = server_args(&server, &opts);
        for (i, (k, _)) in data.iter().enumerate() {
            args.push(format!(
                "{k}={}",
                out.path().join(format!("b{i}")).display()
            ));
        }
        let so = run_example(wrap, args);
        assert!(so.contains("succeeded: 3 of 3 files"), "{so}");
        assert!(so.contains("verified md5"), "{so}");
        for (i, (_, d)) in data.iter().enumerate() {
            assert_eq!(std::fs::read(out.path().join(format!("b{i}"))).unwrap(), *d);
        }
        // A prefix below a directory.
        let mut args = server_args(&server, &opts);
        args.extend([
            "-P".to_string(),
            "c-dl/".to_string(),
            out.path().join("p").display().to_string(),
        ]);
        let so = run_example(wrap, args);
        assert!(so.contains("succeeded: 3 of 3 files"), "{so}");
        for (k, d) in &data {
            let rel = k.strip_prefix("c-dl/").unwrap();
            assert_eq!(
                std::fs::read(out.path().join("p").join(rel)).unwrap(),
                *d,
                "{k}"
            );
        }
    }
}
