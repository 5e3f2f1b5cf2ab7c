//! Every decoder of untrusted bytes (`chronolog_format::entry`, the entry
//! points of the fuzz targets in `fuzz/`) fed arbitrary and mutated input on
//! stable Rust: no panic, and no allocation out of proportion to the input.
//! Mutations start from the blocks of the golden traces, so they reach deep
//! into the decoders (a random buffer rarely gets past the first check).
//!
//! The allocation bound is checked by this binary's global allocator, which
//! remembers the largest single request.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use chronolog_format::entry;
use proptest::prelude::*;

struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only observes sizes.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

/// The most any decoder may ask for at once: a column's value bound (32
/// MiB of u64) or LZ4's largest expansion of the input, whichever is more.
fn allocation_bound(input: usize) -> usize {
    (64 << 20).max(input.saturating_mul(300))
}

fn golden() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/compat");
    let mut files = Vec::new();
    for version in std::fs::read_dir(root).expect("fixtures/compat").flatten() {
        for file in std::fs::read_dir(version.path())
            .expect("version dir")
            .flatten()
        {
            if file.path().extension().is_some_and(|e| e == "clog") {
                files.push(std::fs::read(file.path()).expect("read"));
            }
        }
    }
    files.sort();
    files
}

/// Bodies of every golden block, by entry point name.
fn bodies(name: &str) -> Vec<Vec<u8>> {
    golden()
        .iter()
        .flat_map(|file| {
            entry::blocks(file)
                .into_iter()
                .filter(|(kind, _)| *kind == name)
                .map(|(_, body)| body.to_vec())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn mutate(
    mut bytes: Vec<u8>,
    flips: &[(prop::sample::Index, u8)],
    cut: Option<prop::sample::Index>,
) -> Vec<u8> {
    if !bytes.is_empty() {
        for (at, xor) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= xor;
        }
    }
    if let Some(cut) = cut {
        let keep = cut.index(bytes.len() + 1);
        bytes.truncate(keep);
    }
    bytes
}

fn within_bound(input: usize, run: impl FnOnce()) {
    LARGEST.store(0, Ordering::Relaxed);
    run();
    let largest = LARGEST.load(Ordering::Relaxed);
    // Other tests run in parallel threads: their allocations count too, and
    // all are bounded the same way by their own small inputs.
    assert!(
        largest <= allocation_bound(input.max(64 << 10)),
        "allocated {largest} bytes for {input} bytes of input"
    );
}

fn flips() -> impl Strategy<Value = Vec<(prop::sample::Index, u8)>> {
    prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mutated_chunk_bodies_never_panic(
        seed in any::<prop::sample::Index>(),
        flips in flips(),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let seeds = bodies("chunk");
        let body = mutate(seeds[seed.index(seeds.len())].clone(), &flips, cut);
        within_bound(body.len(), || { let _ = entry::chunk(&body); });
    }

    #[test]
    fn mutated_metadata_header_and_footer_bodies_never_panic(
        which in 0usize..3,
        seed in any::<prop::sample::Index>(),
        flips in flips(),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let name = ["metadata", "header", "footer"][which];
        let seeds = bodies(name);
        let body = mutate(seeds[seed.index(seeds.len())].clone(), &flips, cut);
        within_bound(body.len(), || {
            let _ = match name {
                "metadata" => entry::metadata(&body),
                "header" => entry::header(&body),
                _ => entry::footer(&body),
            };
        });
    }

    #[test]
    fn arbitrary_columns_never_panic(
        compression in 0u8..3,
        encoding in 0u8..6,
        count in prop_oneof![0usize..64, any::<usize>()],
        raw_len in prop_oneof![0usize..4096, any::<usize>()],
        data in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        within_bound(data.len(), || {
            let _ = entry::column(compression, encoding, count, raw_len, &data);
        });
    }

    #[test]
    fn damaged_whole_files_read_what_is_intact(
        seed in any::<prop::sample::Index>(),
        flips in flips(),
        cut in prop::option::of(any::<prop::sample::Index>()),
        splice in prop::option::of((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<prop::sample::Index>())),
    ) {
        let files = golden();
        let original = files[seed.index(files.len())].clone();
        let mut bytes = mutate(original.clone(), &flips, cut);
        // A duplicated or moved stretch (chunks repeated or swapped).
        if let Some((from, len, to)) = splice
            && !original.is_empty()
        {
            let start = from.index(original.len());
            let end = (start + len.index(original.len() - start + 1)).min(original.len());
            let at = to.index(bytes.len() + 1);
            let piece = original[start..end].to_vec();
            bytes.splice(at..at, piece);
        }
        within_bound(bytes.len(), || { let _ = entry::read_file(&bytes); });
    }
}

#[test]
fn every_golden_block_decodes() {
    for file in golden() {
        assert!(entry::read_file(&file) > 0 || file.len() < 1024);
        for (name, body) in entry::blocks(&file) {
            let decoded = match name {
                "chunk" => entry::chunk(body).map(|_| ()),
                "metadata" => entry::metadata(body),
                "header" => entry::header(body),
                _ => entry::footer(body),
            };
            assert!(decoded.is_ok(), "{name}: {decoded:?}");
        }
    }
}

#[test]
fn huge_claimed_lengths_are_refused_before_allocating() {
    within_bound(16, || {
        assert!(entry::column(1, 1, 1 << 40, 1 << 40, &[0u8; 16]).is_err());
        assert!(entry::column(0, 1, usize::MAX, 16, &[0u8; 16]).is_err());
    });
}
