//! Damaged traces: truncation anywhere reads back a prefix, byte flips never
//! panic, and repair keeps exactly what is intact.

mod common;

use chronolog_format::synth::{SynthOptions, write_trace};
use chronolog_format::{
    ColumnMask, FooterStatus, FormatError, TraceReader, WriterOptions, check, repair,
};
use proptest::prelude::*;

fn sample() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.clog");
    let options = SynthOptions {
        events: 3000,
        seed: 11,
        threads: 3,
        batch_events: 700,
    };
    write_trace(
        &path,
        &options,
        WriterOptions {
            max_chunk_events: 256,
            queue_depth: 4,
        },
    )
    .expect("write");
    std::fs::read(&path).expect("read")
}

/// Events read from `bytes`, or `None` when the reader refused the file.
fn events_of(bytes: &[u8]) -> Option<Vec<u64>> {
    let reader = TraceReader::from_bytes("t.clog", bytes).ok()?;
    Some(
        common::all_events(&reader)
            .iter()
            .map(|(e, _)| e.seq)
            .collect(),
    )
}

#[test]
fn truncation_at_every_chunk_boundary_reads_back_a_prefix() {
    let bytes = sample();
    let full = TraceReader::from_bytes("t.clog", &bytes).expect("open");
    let all: Vec<u64> = common::all_events(&full)
        .iter()
        .map(|(e, _)| e.seq)
        .collect();
    assert!(all.len() >= 3000, "the sample holds {} events", all.len());
    let mut expected = 0usize;
    for chunk in full.chunks() {
        for cut in [chunk.offset, chunk.offset + chunk.length] {
            let reader =
                TraceReader::from_bytes("t.clog", &bytes[..cut as usize]).expect("open prefix");
            assert_eq!(reader.footer_status(), &FooterStatus::Missing);
            let seqs: Vec<u64> = common::all_events(&reader)
                .iter()
                .map(|(e, _)| e.seq)
                .collect();
            if cut == chunk.offset + chunk.length {
                expected += chunk.stats.event_count as usize;
            }
            assert_eq!(seqs, all[..expected], "cut at {cut}");
        }
    }
    assert_eq!(expected, all.len());
}

#[test]
fn longer_prefixes_never_read_fewer_events() {
    let bytes = sample();
    let all = events_of(&bytes).expect("full trace");
    let mut previous = 0;
    for cut in (0..=bytes.len()).step_by(97).chain([bytes.len()]) {
        let Some(seqs) = events_of(&bytes[..cut]) else {
            assert!(
                cut < 2500,
                "a prefix of {cut} bytes with a header was refused"
            );
            continue;
        };
        assert_eq!(seqs, all[..seqs.len()], "cut at {cut} is not a prefix");
        assert!(seqs.len() >= previous, "cut at {cut} read fewer events");
        previous = seqs.len();
    }
    assert_eq!(previous, all.len());
}

#[test]
fn a_cut_inside_the_header_is_a_clear_error() {
    let bytes = sample();
    for cut in [1, 7, 8, 15, 16, 40] {
        let err = TraceReader::from_bytes("t.clog", &bytes[..cut]).expect_err("refused");
        assert!(
            matches!(err, FormatError::Truncated { .. }),
            "cut {cut}: {err}"
        );
        assert!(!err.to_string().contains('\n'));
    }
}

#[test]
fn a_damaged_chunk_is_reported_skipped_and_repaired_away() {
    let mut bytes = sample();
    let reader = TraceReader::from_bytes("t.clog", &bytes).expect("open");
    let victim = reader.chunks()[3].clone();
    let total = reader.event_count();
    bytes[(victim.offset + victim.length / 2) as usize] ^= 0x5a;
    let reader = TraceReader::from_bytes("t.clog", &bytes).expect("open damaged");
    let report = check(&reader);
    assert_eq!(report.damage.len(), 1);
    assert_eq!(report.damage[0].offset, victim.offset);
    assert_eq!(report.events, total - u64::from(victim.stats.event_count));
    assert!(reader.read_chunk(3, ColumnMask::ALL).is_err());

    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("repaired.clog");
    repair(&reader, &out).expect("repair");
    let repaired = TraceReader::open(&out).expect("open repaired");
    let report = check(&repaired);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.events, total - u64::from(victim.stats.event_count));
    assert_eq!(
        repaired.tables().string_count(),
        reader.tables().string_count()
    );
}

#[test]
fn a_newer_major_version_is_refused() {
    let mut bytes = sample();
    bytes[8] = 2;
    let err = TraceReader::from_bytes("t.clog", &bytes).expect_err("refused");
    assert!(
        matches!(err, FormatError::NewerVersion { major: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade chronolog"));
}

#[test]
fn a_footer_pointing_outside_the_file_falls_back_to_scanning() {
    let mut bytes = sample();
    let n = bytes.len();
    bytes[n - 16..n - 8].copy_from_slice(&u64::MAX.to_le_bytes());
    let reader = TraceReader::from_bytes("t.clog", &bytes).expect("open");
    assert!(matches!(reader.footer_status(), FooterStatus::Damaged(_)));
    assert_eq!(
        reader.event_count(),
        events_of(&sample()).expect("full").len() as u64
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_byte_flips_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..8)) {
        let mut bytes = sample();
        let n = bytes.len();
        for (index, mask) in &flips {
            bytes[index.index(n)] ^= mask;
        }
        if let Ok(reader) = TraceReader::from_bytes("t.clog", &bytes) {
            let _ = common::all_events(&reader);
            let report = check(&reader);
            prop_assert!(report.events <= 4000);
        }
    }

    #[test]
    fn random_garbage_never_panics(garbage in prop::collection::vec(any::<u8>(), 0..4096), keep in 0usize..3000) {
        let mut bytes = sample();
        bytes.truncate(keep.max(16));
        bytes.extend_from_slice(&garbage);
        if let Ok(reader) = TraceReader::from_bytes("t.clog", &bytes) {
            let _ = check(&reader);
        }
    }
}

#[test]
fn a_full_disk_is_an_error_not_a_panic() {
    use chronolog_format::{HeaderInfo, TraceWriter};
    if !std::path::Path::new("/dev/full").exists() {
        return;
    }
    let err = TraceWriter::create(
        "/dev/full",
        &HeaderInfo::default(),
        WriterOptions::default(),
    )
    .expect_err("nothing fits on /dev/full");
    assert!(matches!(err, FormatError::Io { .. }), "{err}");
    assert!(err.to_string().contains("No space left"), "{err}");
}

#[test]
fn a_writer_dropped_without_finish_still_completes_its_file() {
    use chronolog_format::{Event, EventBatch, HeaderInfo, ThreadMeta, TraceWriter};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dropped.clog");
    {
        let mut writer =
            TraceWriter::create(&path, &HeaderInfo::default(), WriterOptions::default())
                .expect("create");
        writer.define_thread(ThreadMeta::default());
        writer.define_string("f.py");
        writer.define_code(chronolog_format::CodeInfo::default());
        let mut batch = EventBatch::default();
        for seq in 0..10 {
            batch.push_event(&Event {
                seq,
                ..Event::default()
            });
        }
        writer.write_batch(batch).expect("write");
    }
    let reader = TraceReader::open(&path).expect("open");
    assert_eq!(reader.footer_status(), &FooterStatus::Intact);
    assert_eq!(reader.event_count(), 10);
}

#[test]
fn ids_used_before_their_definition_are_refused() {
    use chronolog_format::{Event, EventBatch, HeaderInfo, TraceWriter};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut writer = TraceWriter::create(
        dir.path().join("t.clog"),
        &HeaderInfo::default(),
        WriterOptions::default(),
    )
    .expect("create");
    let mut batch = EventBatch::default();
    batch.push_event(&Event {
        code: 3,
        ..Event::default()
    });
    let err = writer
        .write_batch(batch)
        .expect_err("code 3 is not defined");
    assert!(matches!(err, FormatError::InvalidBatch(_)), "{err}");
}
