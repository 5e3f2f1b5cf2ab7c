//! A deterministic generator of traces shaped like real ones.
//!
//! The golden files, the property tests, the benchmarks and the demo all need
//! traces before (and independently of) the recorder. This generator plays a
//! small imaginary program: a few files of functions calling each other on
//! one or more threads, mostly `line` events, variable changes on about a
//! third of them, returns with values, and exceptions that are raised,
//! propagate through frames and are handled. The same options always give
//! the same bytes.

use std::path::Path;

use crate::error::Result;
use crate::event::{Event, EventBatch, EventKind, VarChange, VarRecord};
use crate::header::HeaderInfo;
use crate::metadata::{CodeInfo, ThreadMeta};
use crate::writer::{TraceWriter, WriteSummary, WriterOptions};

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct SynthOptions {
    /// Number of events.
    pub events: u64,
    /// Seed of the pseudo-random choices.
    pub seed: u64,
    /// Number of threads (at least 1).
    pub threads: u32,
    /// Events per batch handed to the writer (the recorder's buffer size).
    pub batch_events: usize,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            events: 10_000,
            seed: 1,
            threads: 2,
            batch_events: 1 << 16,
        }
    }
}

/// xorshift64*: small, fast and the same everywhere.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const FILES: [&str; 3] = ["shop/orders.py", "shop/pricing.py", "shop/util.py"];
/// (file index, qualname, first line, body lines, locals)
const FUNCTIONS: [(usize, &str, u32, u32, &[&str]); 8] = [
    (0, "<module>", 1, 6, &["orders", "total"]),
    (0, "main", 10, 8, &["orders", "report", "i"]),
    (0, "Order.total", 22, 6, &["self", "amount", "item"]),
    (1, "price_for", 3, 5, &["sku", "qty", "price"]),
    (1, "apply_discount", 12, 7, &["price", "rate", "code"]),
    (1, "parse_rate", 24, 4, &["text", "value"]),
    (2, "fmt_money", 1, 3, &["amount", "text"]),
    (
        2,
        "retry.<locals>.wrapper",
        8,
        6,
        &["args", "attempt", "result"],
    ),
];
const TYPES: [&str; 5] = ["int", "str", "list", "float", "ValueError"];

struct Frame {
    id: u64,
    function: usize,
    line_index: u32,
    lines_run: u32,
}

struct Thread {
    stack: Vec<Frame>,
}

/// Interned ids the generator uses.
struct Ids {
    codes: Vec<u32>,
    locals: Vec<Vec<u32>>,
    types: Vec<u32>,
    threads: Vec<u32>,
}

fn define_metadata(writer: &mut TraceWriter, threads: u32) -> Ids {
    let files: Vec<u32> = FILES.iter().map(|f| writer.define_string(f)).collect();
    for (i, &file) in files.iter().enumerate() {
        let mut text = String::new();
        for line in 1..=40 {
            text.push_str(&format!("# {} line {line}\n", FILES[i]));
        }
        writer.add_source(file, &text);
    }
    let mut codes = Vec::new();
    let mut locals = Vec::new();
    for &(file, qualname, first_line, _, names) in &FUNCTIONS {
        let qualname_id = writer.define_string(qualname);
        let bare = qualname.rsplit('.').next().unwrap_or(qualname);
        let name_id = writer.define_string(bare);
        codes.push(writer.define_code(CodeInfo {
            file: files[file],
            qualname: qualname_id,
            name: name_id,
            first_line,
        }));
        locals.push(names.iter().map(|n| writer.define_string(n)).collect());
    }
    let types = TYPES.iter().map(|t| writer.define_string(t)).collect();
    let threads = (0..threads.max(1))
        .map(|i| {
            writer.define_thread(ThreadMeta {
                name: if i == 0 {
                    "MainThread".into()
                } else {
                    format!("worker-{i}")
                },
                native_id: 4242 + u64::from(i),
                ident: 140_000_000 + u64::from(i),
            })
        })
        .collect();
    Ids {
        codes,
        locals,
        types,
        threads,
    }
}

fn value_text(rng: &mut Rng) -> (String, usize) {
    match rng.below(10) {
        0..=4 => (format!("{}", rng.below(100)), 0),
        5..=6 => (format!("'item-{}'", rng.below(20)), 1),
        7..=8 => {
            let n = rng.below(5);
            let items: Vec<String> = (0..n).map(|_| rng.below(10).to_string()).collect();
            (format!("[{}]", items.join(", ")), 2)
        }
        _ => (format!("{}.{:02}", rng.below(500), rng.below(100)), 3),
    }
}

/// Writes the synthetic trace's metadata and events through `writer`.
pub fn generate(writer: &mut TraceWriter, options: &SynthOptions) -> Result<()> {
    let ids = define_metadata(writer, options.threads);
    let mut rng = Rng(options.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut threads: Vec<Thread> = ids
        .threads
        .iter()
        .map(|_| Thread { stack: Vec::new() })
        .collect();
    let mut batch = EventBatch::default();
    let (mut seq, mut ts, mut next_frame, mut next_exc) = (0u64, 0u64, 1u64, 1u64);
    let mut current = 0usize;
    while seq < options.events {
        if threads.len() > 1 && rng.chance(2) {
            current = (current + 1) % threads.len();
        }
        let thread = ids.threads[current];
        let stack = &mut threads[current].stack;
        ts += 20 + rng.below(200);
        let mut event = Event {
            seq,
            ts_ns: ts,
            thread,
            ..Event::default()
        };
        let depth = stack.len();
        let wants_call = stack.is_empty() || (depth < 12 && rng.chance(12));
        let wants_return = !stack.is_empty()
            && stack
                .last()
                .is_some_and(|f| f.lines_run > FUNCTIONS[f.function].3)
            && rng.chance(40);
        if wants_call && !wants_return {
            let function = if stack.is_empty() {
                0
            } else {
                1 + rng.below(FUNCTIONS.len() as u64 - 1) as usize
            };
            let frame = Frame {
                id: next_frame,
                function,
                line_index: 0,
                lines_run: 0,
            };
            next_frame += 1;
            event.kind = EventKind::Call as u8;
            event.frame = frame.id;
            event.depth = depth as u32;
            event.code = ids.codes[function];
            event.line = FUNCTIONS[function].2;
            let index = batch.push_event(&event);
            for &name in ids.locals[function].iter().take(1 + rng.below(2) as usize) {
                let (text, type_index) = value_text(&mut rng);
                let value = batch.values.push(&text);
                batch.push_var(&VarRecord {
                    event: index,
                    name,
                    change: VarChange::Start as u8,
                    value,
                    type_name: ids.types[type_index] + 1,
                });
            }
            stack.push(frame);
        } else if let Some(frame) = stack.last_mut() {
            let (_, _, first_line, body, _) = FUNCTIONS[frame.function];
            event.frame = frame.id;
            event.depth = (depth - 1) as u32;
            event.code = ids.codes[frame.function];
            event.line = first_line + 1 + frame.line_index;
            if wants_return {
                event.kind = EventKind::Return as u8;
                let (text, type_index) = value_text(&mut rng);
                event.arg = batch.values.push(&text);
                event.arg_type = ids.types[type_index] + 1;
                batch.push_event(&event);
                stack.pop();
            } else if rng.chance(1) {
                // An exception raised here, handled here or one frame up.
                event.kind = EventKind::Raise as u8;
                event.exc_id = next_exc;
                next_exc += 1;
                event.arg = batch
                    .values
                    .push(&format!("invalid literal: '{}'", rng.below(50)));
                event.arg_type = ids.types[4] + 1;
                batch.push_event(&event);
                seq += 1;
                event.seq = seq;
                let propagates = depth > 1 && rng.chance(50);
                event.kind = if propagates {
                    EventKind::Unwind
                } else {
                    EventKind::Handled
                } as u8;
                batch.push_event(&event);
                if propagates {
                    stack.pop();
                    if let Some(caller) = stack.last() {
                        for kind in [EventKind::Raise, EventKind::Handled] {
                            seq += 1;
                            event.seq = seq;
                            event.kind = kind as u8;
                            event.frame = caller.id;
                            event.depth = (depth - 2) as u32;
                            event.code = ids.codes[caller.function];
                            event.line = FUNCTIONS[caller.function].2 + 1 + caller.line_index;
                            batch.push_event(&event);
                        }
                    }
                }
            } else {
                event.kind = EventKind::Line as u8;
                let index = batch.push_event(&event);
                let locals = &ids.locals[frame.function];
                if rng.chance(35) {
                    let which = rng.below(locals.len() as u64) as usize;
                    let (text, type_index) = value_text(&mut rng);
                    let value = batch.values.push(&text);
                    let change = if rng.chance(70) {
                        VarChange::Modified
                    } else {
                        VarChange::New
                    };
                    batch.push_var(&VarRecord {
                        event: index,
                        name: locals[which],
                        change: change as u8,
                        value,
                        type_name: ids.types[type_index] + 1,
                    });
                }
                frame.line_index = (frame.line_index + 1) % body;
                frame.lines_run += 1;
            }
        }
        seq += 1;
        if batch.len() >= options.batch_events {
            writer.write_batch(std::mem::take(&mut batch))?;
        }
    }
    writer.write_batch(batch)?;
    writer.add_meta("exit_status", "0");
    Ok(())
}

/// The header the generator writes.
pub fn header(options: &SynthOptions) -> HeaderInfo {
    HeaderInfo {
        writer: "chronolog synth".into(),
        start_unix_ns: 1_767_225_600_000_000_000,
        meta: vec![
            ("python".into(), "3.12.1 (synthetic)".into()),
            ("argv".into(), "['shop/orders.py']".into()),
            ("seed".into(), options.seed.to_string()),
        ],
    }
}

/// Writes a complete synthetic trace to `path`.
pub fn write_trace(
    path: &Path,
    options: &SynthOptions,
    writer_options: WriterOptions,
) -> Result<WriteSummary> {
    let mut writer = TraceWriter::create(path, &header(options), writer_options)?;
    generate(&mut writer, options)?;
    writer.finish()
}
