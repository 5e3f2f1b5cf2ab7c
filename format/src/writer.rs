//! The append-only writer.
//!
//! The caller (the recorder, under the GIL) only moves batches into a
//! bounded queue; a background thread encodes them into chunks — the chunks
//! of one round in parallel with rayon — and appends them to the file. A
//! full queue blocks the caller, which bounds memory whatever the run's
//! length. Every round ends with the file's buffers handed to the OS, so a
//! process that is killed loses only what had not reached the writer yet.
//!
//! A producer on a hot path hands over a [`RowBatch`] (events as rows)
//! with [`TraceWriter::write_rows`]: the rows become columns, and are
//! checked, on the background thread. Written row batches come back
//! emptied, their allocations kept: the caller takes one with
//! [`TraceWriter::spare_rows`] instead of allocating (a fresh batch of
//! 65,536 events is ~4 MB of pages the kernel must fault in one by one on
//! the recording thread).
//!
//! Metadata (strings, code objects, threads, sources) defined through the
//! writer is queued ahead of the next batch, so it always precedes its first
//! use in the file. The first I/O error stops the writer; every later call
//! returns it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rayon::prelude::*;

use crate::block::{BlockKind, block_header, prelude, trailer};
use crate::chunk::{ChunkStats, encode_chunk};
use crate::error::{FormatError, Result};
use crate::event::{EventBatch, RowBatch};
use crate::footer::{ChunkEntry, Footer};
use crate::header::HeaderInfo;
use crate::metadata::{CodeInfo, PendingMetadata, ThreadMeta};

/// Tuning of a [`TraceWriter`].
#[derive(Clone, Copy, Debug)]
pub struct WriterOptions {
    /// Largest number of events per chunk; larger batches are split.
    pub max_chunk_events: usize,
    /// Number of jobs the queue holds before `write_batch` blocks.
    pub queue_depth: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            max_chunk_events: 1 << 16,
            queue_depth: 8,
        }
    }
}

/// How many threads, code objects and strings were defined: the ids a
/// batch may use.
#[derive(Clone, Copy, Debug)]
struct Defined {
    threads: u32,
    codes: u32,
    strings: u32,
}

/// Emptied batches kept for reuse at most.
const MAX_SPARE_BATCHES: usize = 2;

/// What a finished writer wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteSummary {
    pub bytes: u64,
    pub chunks: u64,
    pub events: u64,
    pub vars: u64,
}

enum Job {
    Metadata(PendingMetadata),
    Batch(Box<EventBatch>),
    /// Rows not yet checked, with the ids defined when they were queued.
    Rows(Box<RowBatch>, Defined),
    Sync(SyncSender<()>),
    Finish(SyncSender<WriteSummary>),
}

/// Writes one trace file. See the module documentation.
#[derive(Debug)]
pub struct TraceWriter {
    path: PathBuf,
    sender: Option<SyncSender<Job>>,
    worker: Option<JoinHandle<()>>,
    failure: Arc<Mutex<Option<String>>>,
    spares: Arc<Mutex<Vec<RowBatch>>>,
    pending: PendingMetadata,
    next_string: u32,
    next_code: u32,
    next_thread: u32,
}

impl Job {
    /// The events a job carries (rows already turned into columns).
    fn batch(&self) -> Option<&EventBatch> {
        match self {
            Job::Batch(batch) => Some(batch),
            Job::Rows(rows, _) => Some(&rows.batch),
            Job::Metadata(_) | Job::Sync(_) | Job::Finish(_) => None,
        }
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::Metadata(_) => "Metadata",
            Job::Batch(_) => "Batch",
            Job::Rows(..) => "Rows",
            Job::Sync(_) => "Sync",
            Job::Finish(_) => "Finish",
        })
    }
}

impl TraceWriter {
    /// Creates (or truncates) `path` and writes the prelude and header.
    pub fn create(
        path: impl AsRef<Path>,
        header: &HeaderInfo,
        options: WriterOptions,
    ) -> Result<TraceWriter> {
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path).map_err(|e| FormatError::io(&path, e))?;
        let mut worker = Worker {
            file: BufWriter::with_capacity(1 << 20, file),
            path: path.clone(),
            offset: 0,
            footer: Footer::default(),
            max_chunk_events: options
                .max_chunk_events
                .clamp(1, crate::chunk::MAX_CHUNK_ROWS),
            pool: None,
            spares: Arc::default(),
        };
        worker.write_all(&prelude(crate::FORMAT_MINOR))?;
        worker.write_block(BlockKind::Header, &header.encode(crate::FORMAT_MINOR))?;
        worker.flush()?;
        let (sender, receiver) = sync_channel(options.queue_depth.max(1));
        let failure = Arc::new(Mutex::new(None));
        let worker_failure = Arc::clone(&failure);
        let spares = Arc::clone(&worker.spares);
        let handle = std::thread::Builder::new()
            .name("chronolog-writer".into())
            .spawn(move || worker.run(receiver, worker_failure))
            .map_err(|e| FormatError::io(&path, e))?;
        Ok(TraceWriter {
            path,
            sender: Some(sender),
            worker: Some(handle),
            failure,
            spares,
            pending: PendingMetadata::default(),
            next_string: 0,
            next_code: 0,
            next_thread: 0,
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Defines the next interned string and returns its id.
    pub fn define_string(&mut self, text: &str) -> u32 {
        self.pending.strings.push(text.to_owned());
        self.next_string += 1;
        self.next_string - 1
    }

    /// Defines the next code object and returns its id.
    pub fn define_code(&mut self, code: CodeInfo) -> u32 {
        self.pending.codes.push((self.next_code, code));
        self.next_code += 1;
        self.next_code - 1
    }

    /// Defines the next thread and returns its id.
    pub fn define_thread(&mut self, thread: ThreadMeta) -> u32 {
        self.pending.threads.push((self.next_thread, thread));
        self.next_thread += 1;
        self.next_thread - 1
    }

    /// Stores the source text of `file` (a string id).
    pub fn add_source(&mut self, file: u32, text: &str) {
        self.pending.sources.push((file, text.to_owned()));
    }

    /// Records a key/value fact about the recording (exit status, ...).
    pub fn add_meta(&mut self, key: &str, value: &str) {
        self.pending.meta.push((key.to_owned(), value.to_owned()));
    }

    /// Queues a batch for writing; blocks while the queue is full.
    pub fn write_batch(&mut self, batch: EventBatch) -> Result<()> {
        batch.validate().map_err(FormatError::InvalidBatch)?;
        check_ids(&batch, self.defined())?;
        self.send_pending()?;
        if !batch.is_empty() {
            self.send(Job::Batch(Box::new(batch)))?;
        }
        Ok(())
    }

    /// Queues events given as rows; blocks while the queue is full. The
    /// batch is checked on the writer's thread: an invalid one stops the
    /// writer, and the next call returns why.
    pub fn write_rows(&mut self, rows: RowBatch) -> Result<()> {
        self.send_pending()?;
        if !rows.is_empty() {
            let defined = self.defined();
            self.send(Job::Rows(Box::new(rows), defined))?;
        }
        Ok(())
    }

    /// An empty row batch the writer is done with, its allocations kept,
    /// if one is ready.
    pub fn spare_rows(&self) -> Option<RowBatch> {
        let mut spares = self.spares.try_lock().ok()?;
        spares.pop()
    }

    fn defined(&self) -> Defined {
        Defined {
            threads: self.next_thread,
            codes: self.next_code,
            strings: self.next_string,
        }
    }

    /// Returns once everything queued so far has been handed to the OS.
    pub fn flush(&mut self) -> Result<()> {
        self.send_pending()?;
        let (reply, done) = sync_channel(1);
        self.send(Job::Sync(reply))?;
        done.recv().map_err(|_| self.stopped())
    }

    /// Writes what is queued, the footer and the trailer, and closes the file.
    pub fn finish(mut self) -> Result<WriteSummary> {
        self.finish_inner()
    }

    fn finish_inner(&mut self) -> Result<WriteSummary> {
        self.send_pending()?;
        let (reply, done) = sync_channel(1);
        self.send(Job::Finish(reply))?;
        let summary = done.recv().map_err(|_| self.stopped());
        self.sender = None;
        if let Some(worker) = self.worker.take() {
            worker
                .join()
                .map_err(|_| FormatError::Bug("the writer thread panicked".into()))?;
        }
        summary
    }

    fn send_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = self.pending.take(self.next_string);
        self.send(Job::Metadata(pending))
    }

    fn send(&mut self, job: Job) -> Result<()> {
        let sender = self.sender.as_ref().ok_or_else(|| self.stopped())?;
        sender.send(job).map_err(|_| self.stopped())
    }

    fn stopped(&self) -> FormatError {
        let reason = self.failure.lock().ok().and_then(|slot| slot.clone());
        FormatError::WriterStopped(reason.unwrap_or_else(|| "the writer has finished".into()))
    }
}

impl Drop for TraceWriter {
    /// A writer dropped without `finish` still completes its file.
    fn drop(&mut self) {
        if self.worker.is_some() {
            let _ = self.finish_inner();
        }
    }
}

/// Every thread, code and string id `batch` uses is defined.
fn check_ids(batch: &EventBatch, defined: Defined) -> Result<()> {
    let undefined = |what: &str, max: Option<u32>, defined: u32| match max {
        Some(id) if id >= defined => Err(FormatError::InvalidBatch(format!(
            "{what} id {id} used before it was defined ({defined} defined)"
        ))),
        _ => Ok(()),
    };
    let ck = batch.checkpoint.iter();
    let threads = batch.thread.iter().chain(
        ck.clone()
            .flat_map(|c| &c.thread)
            .filter(|&&t| t != crate::Checkpoint::SUSPENDED),
    );
    undefined("thread", threads.copied().max(), defined.threads)?;
    let codes = batch.code.iter().chain(ck.clone().flat_map(|c| &c.code));
    undefined("code", codes.copied().max(), defined.codes)?;
    let names = batch.var_name.iter().chain(ck.flat_map(|c| &c.var_name));
    undefined("string", names.copied().max(), defined.strings)?;
    let type_ids = batch.arg_type.iter().chain(&batch.var_type).copied().max();
    undefined(
        "type-name string",
        type_ids.and_then(|id| id.checked_sub(1)),
        defined.strings,
    )
}

/// The background thread's state.
struct Worker {
    file: BufWriter<File>,
    path: PathBuf,
    offset: u64,
    footer: Footer,
    max_chunk_events: usize,
    /// The writer's own encoding threads, made at the first round. Not
    /// rayon's global pool: a process forked after that pool started has
    /// its bookkeeping but none of its threads, and would wait forever.
    pool: Option<rayon::ThreadPool>,
    /// Written row batches, emptied, for [`TraceWriter::spare_rows`].
    spares: Arc<Mutex<Vec<RowBatch>>>,
}

enum Encoded {
    Metadata(Vec<u8>),
    Chunk(Vec<u8>, ChunkStats),
}

impl Worker {
    fn run(mut self, jobs: Receiver<Job>, failure: Arc<Mutex<Option<String>>>) {
        let mut round = Vec::new();
        loop {
            let Ok(first) = jobs.recv() else {
                // Every sender is gone without `finish`: complete the file anyway.
                let _ = self.finish();
                return;
            };
            round.push(first);
            while round.len() < 32
                && matches!(
                    round.last(),
                    Some(Job::Batch(_) | Job::Rows(..) | Job::Metadata(_))
                )
            {
                match jobs.try_recv() {
                    Ok(job) => round.push(job),
                    Err(_) => break,
                }
            }
            match self.process(&mut round) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    if let Ok(mut slot) = failure.lock() {
                        *slot = Some(e.to_string());
                    }
                    return;
                }
            }
        }
    }

    /// Encodes and writes one round of jobs; false once finished.
    fn process(&mut self, round: &mut Vec<Job>) -> Result<bool> {
        for job in round.iter_mut() {
            if let Job::Rows(rows, defined) = job {
                if !rows.batch.is_empty() {
                    // Variable changes index the rows: columns must be empty.
                    return Err(FormatError::InvalidBatch(
                        "a row batch with events in its columns too".into(),
                    ));
                }
                rows.rows_to_columns();
                rows.batch.validate().map_err(FormatError::InvalidBatch)?;
                check_ids(&rows.batch, *defined)?;
            }
        }
        let mut tasks: Vec<(&Job, Range<usize>)> = Vec::new();
        for job in round.iter() {
            match job.batch() {
                None if matches!(job, Job::Metadata(_)) => tasks.push((job, 0..0)),
                None => {}
                Some(batch) => {
                    let mut start = 0;
                    while start < batch.len() {
                        let end = (start + self.max_chunk_events).min(batch.len());
                        tasks.push((job, start..end));
                        start = end;
                    }
                }
            }
        }
        let encode = |(job, range): (&Job, Range<usize>)| match (job, job.batch()) {
            (Job::Metadata(pending), _) => Some(Encoded::Metadata(pending.encode())),
            (_, Some(batch)) => {
                let (body, stats) = encode_chunk(batch, range);
                Some(Encoded::Chunk(body, stats))
            }
            _ => None,
        };
        if self.pool.is_none() && tasks.len() > 1 {
            let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
            self.pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("chronolog-encode-{i}"))
                .build()
                .ok();
        }
        let encoded: Vec<Encoded> = match &self.pool {
            Some(pool) if tasks.len() > 1 => {
                pool.install(|| tasks.into_par_iter().filter_map(encode).collect())
            }
            _ => tasks.into_iter().filter_map(encode).collect(),
        };
        for block in encoded {
            match block {
                Encoded::Metadata(body) => {
                    self.footer.metadata_blocks.push(self.offset);
                    self.write_block(BlockKind::Metadata, &body)?;
                }
                Encoded::Chunk(body, stats) => {
                    let offset = self.offset;
                    self.write_block(BlockKind::Chunk, &body)?;
                    self.footer.chunks.push(ChunkEntry {
                        offset,
                        length: self.offset - offset,
                        stats,
                    });
                }
            }
        }
        self.flush()?;
        let mut keep_going = true;
        for job in round.drain(..) {
            match job {
                Job::Sync(reply) => {
                    let _ = reply.send(());
                }
                Job::Finish(reply) => {
                    let summary = self.finish()?;
                    let _ = reply.send(summary);
                    keep_going = false;
                }
                Job::Rows(rows, _) => self.keep_spare(rows),
                Job::Batch(_) | Job::Metadata(_) => {}
            }
        }
        Ok(keep_going)
    }

    /// Empties a written batch and keeps it for the caller, up to
    /// [`MAX_SPARE_BATCHES`].
    fn keep_spare(&self, mut rows: Box<RowBatch>) {
        let Ok(mut spares) = self.spares.lock() else {
            return;
        };
        if spares.len() < MAX_SPARE_BATCHES {
            rows.clear();
            spares.push(*rows);
        }
    }

    fn finish(&mut self) -> Result<WriteSummary> {
        let footer_offset = self.offset;
        self.write_block(BlockKind::Footer, &self.footer.encode())?;
        self.write_all(&trailer(footer_offset))?;
        self.flush()?;
        let stats = self.footer.chunks.iter().map(|c| &c.stats);
        Ok(WriteSummary {
            bytes: self.offset,
            chunks: self.footer.chunks.len() as u64,
            events: stats.clone().map(|s| u64::from(s.event_count)).sum(),
            vars: stats.map(|s| u64::from(s.var_count)).sum(),
        })
    }

    fn write_block(&mut self, kind: BlockKind, body: &[u8]) -> Result<()> {
        self.write_all(&block_header(kind, body))?;
        self.write_all(body)
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .map_err(|e| FormatError::io(&self.path, e))?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.file
            .flush()
            .map_err(|e| FormatError::io(&self.path, e))
    }
}
