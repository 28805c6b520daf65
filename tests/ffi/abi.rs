//! The ABI's shape: statuses and states are `uint32_t` typedefs whatever
//! the C compiler does with enums, the header's layouts are Rust's, and the
//! struct_size rule holds for callers built against older and newer
//! headers.

use std::mem::{offset_of, size_of};

use super::*;

/// The lines `examples-c/abi.c` prints, from Rust's own layout.
fn rust_layout() -> String {
    let mut want = String::new();
    for (name, n) in [
        ("bp_status", size_of::<bp_status>()),
        ("bp_job_state", size_of::<bp_job_state>()),
        ("bp_file_state", size_of::<bp_file_state>()),
        ("bp_log_level", size_of::<bp_log_level>()),
    ] {
        want.push_str(&format!("sizeof {name} {n}\n"));
    }
    macro_rules! fields {
        ($t:ident: $($f:ident),*) => {{
            want.push_str(&format!("sizeof {} {}\n", stringify!($t), size_of::<$t>()));
            // SAFETY: zeroed is a value of these plain structs; only sizes are read.
            let v: $t = unsafe { std::mem::zeroed() };
            $(want.push_str(&format!(
                "{}.{} {} {}\n",
                stringify!($t),
                stringify!($f),
                offset_of!($t, $f),
                std::mem::size_of_val(&v.$f)
            ));)*
        }};
    }
    fields!(bp_progress: struct_size, state, error, files_total, files_done, files_failed,
        parts_total, parts_done, bytes_total, bytes_done, speed_bps, avg_speed_bps,
        peak_speed_bps, elapsed_ms, bytes_sent, integrity_used);
    fields!(bp_file_report: struct_size, path, key, etag, size, bytes_done, avg_speed_bps,
        peak_speed_bps, state, error, upload_id, verified);
    want
}

#[test]
fn header_types_are_fixed_width_typedefs() {
    let header = std::fs::read_to_string(repo().join("include/batchput.h")).unwrap();
    for t in [
        "bp_status",
        "bp_job_state",
        "bp_file_state",
        "bp_integrity",
        "bp_verified",
        "bp_log_level",
    ] {
        assert!(
            header.contains(&format!("typedef uint32_t {t};")),
            "no `typedef uint32_t {t};` in the header"
        );
    }
    // A plain enum type names values only: no field, parameter or return
    // has it. (C23 gets the enum itself, with uint32_t as its underlying
    // type, which fixes its size.)
    for line in header.lines().filter(|l| l.contains("enum bp_")) {
        let c23 = line.starts_with("typedef enum bp_") && line.ends_with(';');
        assert!(
            c23 || (line.starts_with("enum bp_") && !line.contains('(')),
            "a C enum type is used in `{line}`"
        );
    }
}

#[test]
fn layouts_do_not_change_with_short_enums_and_match_rust() {
    let bin = tempfile::tempdir().unwrap();
    let programs = [bin.path().join("abi"), bin.path().join("abi-short-enums")];
    let out = run(
        Command::new("make")
            .arg("-C")
            .arg(repo().join("examples-c"))
            .arg(format!("OUT={}", bin.path().display()))
            .args(&programs),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "make: {}", text(&out).1);
    let want = rust_layout();
    let mut enum_sizes = Vec::new();
    for program in &programs {
        let out = run(&mut Command::new(program), Duration::from_secs(30));
        let (so, se) = text(&out);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {so}\n{se}",
            program.display()
        );
        assert_eq!(
            so,
            want,
            "{}: the C layout differs from Rust's",
            program.display()
        );
        enum_sizes.push(se.trim().to_string());
    }
    // The flag took effect (the enum shrank), and nothing above changed.
    assert_eq!(
        enum_sizes,
        ["sizeof(enum bp_status) 4", "sizeof(enum bp_status) 1"]
    );
}

/// A bp_progress or bp_file_report with room to spare, every byte a canary.
#[repr(C, align(8))]
struct Canary([u8; 256]);

const CANARY: u8 = 0xAB;

impl Canary {
    fn new(struct_size: usize) -> Canary {
        let mut c = Canary([CANARY; 256]);
        c.0[..size_of::<usize>()].copy_from_slice(&struct_size.to_ne_bytes());
        c
    }

    fn ptr<T>(&mut self) -> *mut T {
        self.0.as_mut_ptr().cast()
    }

    fn struct_size(&self) -> usize {
        usize::from_ne_bytes(self.0[..size_of::<usize>()].try_into().unwrap())
    }

    /// Whether every byte from `from` on is still the canary.
    fn untouched_from(&self, from: usize) -> bool {
        self.0[from..].iter().all(|&b| b == CANARY)
    }
}

/// A finished one-file job: a single PUT, so its report has an ETag and no
/// upload id.
fn finished_job(server: &Server, name: &str) -> (*mut bp_uploader, *mut bp_job) {
    let files = make_files(&[(format!("ffi/abi/{name}"), 1000)]);
    let up = uploader_for(server, &[]);
    let job = start(up, &pairs(&files));
    assert_eq!(unsafe { bp_job_wait(job, 60_000) }, bp_status::BP_OK);
    assert_eq!(
        poll(job).state,
        bp_job_state::BP_JOB_SUCCEEDED,
        "{}",
        job_error(job)
    );
    (up, job)
}

#[test]
fn struct_size_below_the_first_version_is_refused_and_nothing_written() {
    let server = support::s3s();
    let (up, job) = finished_job(&server, "small");
    let first_progress = offset_of!(bp_progress, bytes_sent);
    let first_report = offset_of!(bp_file_report, upload_id);
    for size in [0, size_of::<usize>(), first_progress - 1] {
        let mut c = Canary::new(size);
        assert_fails(
            unsafe { bp_job_poll(job, c.ptr()) },
            bp_status::BP_INVALID_ARGUMENT,
            &[
                "bp_job_poll",
                &format!("struct_size is {size}"),
                "sizeof(bp_progress)",
            ],
        );
        assert_eq!(c.struct_size(), size);
        assert!(
            c.untouched_from(size_of::<usize>()),
            "written although refused"
        );
    }
    for size in [0, first_report - 1] {
        let mut c = Canary::new(size);
        assert_fails(
            unsafe { bp_job_file(job, 0, c.ptr()) },
            bp_status::BP_INVALID_ARGUMENT,
            &["bp_job_file", "struct_size", "sizeof(bp_file_report)"],
        );
        assert!(
            c.untouched_from(size_of::<usize>()),
            "written although refused"
        );
    }
    unsafe {
        bp_job_free(job);
        bp_uploader_free(up);
    }
}

#[test]
fn an_older_caller_gets_its_fields_and_not_a_byte_more() {
    let server = support::s3s();
    let (up, job) = finished_job(&server, "older");
    let want = poll(job);

    // Built before bytes_sent existed: sizeof was offsetof(bytes_sent).
    let old = offset_of!(bp_progress, bytes_sent);
    let mut c = Canary::new(old);
    assert_eq!(unsafe { bp_job_poll(job, c.ptr()) }, bp_status::BP_OK);
    assert_eq!(c.struct_size(), old);
    assert!(c.untouched_from(old), "bp_job_poll wrote past struct_size");
    let got = c.ptr::<bp_progress>();
    // Field by field, never the whole struct: integrity_used holds canary
    // bytes, which are no bp_integrity.
    macro_rules! field {
        ($p:ident.$f:ident) => {
            // SAFETY: within the canary's 256 bytes; written by the library
            // up to `old`, plain canary bytes after (read only as a u64).
            unsafe { std::ptr::addr_of!((*$p).$f).read_unaligned() }
        };
    }
    assert_eq!(field!(got.state), bp_job_state::BP_JOB_SUCCEEDED);
    assert_eq!(field!(got.error), bp_status::BP_OK);
    assert_eq!((field!(got.files_done), field!(got.bytes_done)), (1, 1000));
    assert_eq!(field!(got.elapsed_ms), want.elapsed_ms);
    assert_eq!(field!(got.bytes_sent), u64::from_ne_bytes([CANARY; 8]));

    // Built before integrity_used existed: bytes_sent, and not a byte more.
    let old = offset_of!(bp_progress, integrity_used);
    let mut c = Canary::new(old);
    assert_eq!(unsafe { bp_job_poll(job, c.ptr()) }, bp_status::BP_OK);
    assert_eq!(c.struct_size(), old);
    assert!(c.untouched_from(old), "bp_job_poll wrote past struct_size");
    let got = c.ptr::<bp_progress>();
    assert_eq!(field!(got.bytes_sent), want.bytes_sent);
    // A newer caller gets it: integrity=auto on s3s-fs, which takes any
    // x-amz-checksum-crc32c on a part, chose etag-md5.
    assert_eq!(want.integrity_used, bp_integrity::BP_INTEGRITY_ETAG_MD5);

    // Built before upload_id existed.
    let old = offset_of!(bp_file_report, upload_id);
    let mut c = Canary::new(old);
    assert_eq!(unsafe { bp_job_file(job, 0, c.ptr()) }, bp_status::BP_OK);
    assert_eq!(c.struct_size(), old);
    // upload_id is NULL for this file: writing it would zero the canary.
    assert!(c.untouched_from(old), "bp_job_file wrote past struct_size");
    // SAFETY: as above; upload_id holds canary bytes and is not followed.
    let got: bp_file_report = unsafe { c.ptr::<bp_file_report>().read() };
    assert_eq!(got.state, bp_file_state::BP_FILE_COMPLETED);
    assert_eq!(
        report_str(got.key).unwrap(),
        report_str(report(job, 0).key).unwrap()
    );
    assert_eq!(etag(&got).len(), 32, "{}", etag(&got));

    unsafe {
        bp_job_free(job);
        bp_uploader_free(up);
    }
}

#[test]
fn a_newer_caller_learns_how_much_an_older_library_filled() {
    let server = support::s3s();
    let (up, job) = finished_job(&server, "newer");
    // A header from the future: 16 more bytes of fields this library does
    // not know. It fills what it knows, says so, and leaves the rest.
    let ours = size_of::<bp_progress>();
    let mut c = Canary::new(ours + 16);
    assert_eq!(unsafe { bp_job_poll(job, c.ptr()) }, bp_status::BP_OK);
    assert_eq!(c.struct_size(), ours);
    assert!(c.untouched_from(ours));
    let ours = size_of::<bp_file_report>();
    let mut c = Canary::new(ours + 16);
    assert_eq!(unsafe { bp_job_file(job, 0, c.ptr()) }, bp_status::BP_OK);
    assert_eq!(c.struct_size(), ours);
    assert!(c.untouched_from(ours));
    unsafe {
        bp_job_free(job);
        bp_uploader_free(up);
    }
}

#[test]
fn report_strings_live_until_the_job_is_freed() {
    let server = support::s3s();
    let (up, job) = finished_job(&server, "lent");
    let first = report(job, 0);
    // Asked again, from other threads: the same pointers, the same text.
    let job_addr = job as usize;
    let others: Vec<(usize, usize)> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let r = report(job_addr as *const bp_job, 0);
                (r.etag as usize, r.key as usize)
            })
        })
        .map(|t| t.join().unwrap())
        .collect();
    for (etag_ptr, key_ptr) in others {
        assert_eq!(etag_ptr, first.etag as usize);
        assert_eq!(key_ptr, first.key as usize);
    }
    assert_eq!(etag(&first).len(), 32);
    unsafe {
        bp_job_free(job);
        bp_uploader_free(up);
    }
}
