//! Metadata: interned strings, code objects, threads, source files and
//! key/value facts about the recording.
//!
//! The writer gathers definitions in [`PendingMetadata`] and writes them as a
//! metadata block before the first chunk that uses them. The reader folds
//! every intact metadata block into [`Tables`]; a damaged block loses only
//! its own definitions (ids are explicit, so later blocks stay correct).

use std::collections::BTreeMap;

use capnp::message::Builder;

use crate::chunk::read_message;
use crate::encoding;
use crate::generated::trace_capnp::{self, Compression};

/// A code object (a function, module body, class body, comprehension ...).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodeInfo {
    /// String id of the file name (`co_filename`).
    pub file: u32,
    /// String id of the qualified name (`co_qualname`).
    pub qualname: u32,
    /// String id of the bare name (`co_name`).
    pub name: u32,
    /// `co_firstlineno`.
    pub first_line: u32,
}

/// A Python thread.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadMeta {
    pub name: String,
    pub native_id: u64,
    pub ident: u64,
}

/// Definitions not yet written.
#[derive(Clone, Debug, Default)]
pub(crate) struct PendingMetadata {
    pub first_string_id: u32,
    pub strings: Vec<String>,
    pub codes: Vec<(u32, CodeInfo)>,
    pub threads: Vec<(u32, ThreadMeta)>,
    pub sources: Vec<(u32, String)>,
    pub meta: Vec<(String, String)>,
}

impl PendingMetadata {
    pub(crate) fn is_empty(&self) -> bool {
        self.strings.is_empty()
            && self.codes.is_empty()
            && self.threads.is_empty()
            && self.sources.is_empty()
            && self.meta.is_empty()
    }

    /// Takes the pending definitions, leaving an empty set whose strings
    /// continue at `next_string_id`.
    pub(crate) fn take(&mut self, next_string_id: u32) -> PendingMetadata {
        std::mem::replace(
            self,
            PendingMetadata {
                first_string_id: next_string_id,
                ..PendingMetadata::default()
            },
        )
    }

    /// The body of a metadata block.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut message = Builder::new_default();
        let mut root = message.init_root::<trace_capnp::metadata::Builder<'_>>();
        root.set_first_string_id(self.first_string_id);
        let mut strings = root.reborrow().init_strings(self.strings.len() as u32);
        for (i, s) in self.strings.iter().enumerate() {
            strings.set(i as u32, s.as_str());
        }
        let mut codes = root.reborrow().init_codes(self.codes.len() as u32);
        for (i, (id, code)) in self.codes.iter().enumerate() {
            let mut c = codes.reborrow().get(i as u32);
            c.set_id(*id);
            c.set_file(code.file);
            c.set_qualname(code.qualname);
            c.set_name(code.name);
            c.set_first_line(code.first_line);
        }
        let mut threads = root.reborrow().init_threads(self.threads.len() as u32);
        for (i, (id, thread)) in self.threads.iter().enumerate() {
            let mut t = threads.reborrow().get(i as u32);
            t.set_id(*id);
            t.set_name(thread.name.as_str());
            t.set_native_id(thread.native_id);
            t.set_ident(thread.ident);
        }
        let mut sources = root.reborrow().init_sources(self.sources.len() as u32);
        for (i, (file, text)) in self.sources.iter().enumerate() {
            let mut s = sources.reborrow().get(i as u32);
            let (compression, data) = encoding::compress(text.as_bytes().to_vec());
            s.set_file(*file);
            s.set_compression(compression);
            s.set_raw_len(u32::try_from(text.len()).unwrap_or(u32::MAX));
            s.set_text(&data);
        }
        write_key_values(root.init_meta(self.meta.len() as u32), &self.meta);
        capnp::serialize::write_message_to_words(&message)
    }
}

pub(crate) fn write_key_values(
    mut list: capnp::struct_list::Builder<'_, trace_capnp::key_value::Owned>,
    pairs: &[(String, String)],
) {
    for (i, (key, value)) in pairs.iter().enumerate() {
        let mut kv = list.reborrow().get(i as u32);
        kv.set_key(key.as_str());
        kv.set_value(value.as_str());
    }
}

pub(crate) fn read_key_values(
    list: capnp::struct_list::Reader<'_, trace_capnp::key_value::Owned>,
) -> capnp::Result<Vec<(String, String)>> {
    list.iter()
        .map(|kv| Ok((kv.get_key()?.to_string()?, kv.get_value()?.to_string()?)))
        .collect()
}

/// How far past the known ids a metadata block may define one. Ids are
/// dense, so a larger jump means damage, and refusing it bounds allocation.
const MAX_ID_GAP: usize = 1 << 16;

/// A source file as stored (decompressed on demand).
#[derive(Clone, Debug)]
struct StoredSource {
    compression: Compression,
    raw_len: usize,
    data: Vec<u8>,
}

/// Every definition read from a trace's metadata blocks.
#[derive(Clone, Debug, Default)]
pub struct Tables {
    strings: Vec<Option<Box<str>>>,
    codes: Vec<Option<CodeInfo>>,
    threads: Vec<Option<ThreadMeta>>,
    sources: BTreeMap<u32, StoredSource>,
    meta: Vec<(String, String)>,
}

fn define<T>(table: &mut Vec<Option<T>>, id: u32, value: T) -> Result<(), String> {
    let index = id as usize;
    if index >= table.len() + MAX_ID_GAP {
        return Err(format!("id {id} jumps far past the {} known", table.len()));
    }
    if index >= table.len() {
        table.resize_with(index + 1, || None);
    }
    table[index] = Some(value);
    Ok(())
}

impl Tables {
    /// Folds in the definitions of one metadata block body.
    pub(crate) fn apply(&mut self, body: &[u8]) -> Result<(), String> {
        let message = read_message(body)?;
        let root = message
            .get_root::<trace_capnp::metadata::Reader<'_>>()
            .map_err(|e| e.to_string())?;
        // Parse everything first so a bad block changes nothing.
        let parsed = (|| -> capnp::Result<_> {
            let strings = root
                .get_strings()?
                .iter()
                .map(|s| Ok(s?.to_string()?.into_boxed_str()))
                .collect::<capnp::Result<Vec<_>>>()?;
            let codes = root
                .get_codes()?
                .iter()
                .map(|c| {
                    (
                        c.get_id(),
                        CodeInfo {
                            file: c.get_file(),
                            qualname: c.get_qualname(),
                            name: c.get_name(),
                            first_line: c.get_first_line(),
                        },
                    )
                })
                .collect::<Vec<_>>();
            let threads = root
                .get_threads()?
                .iter()
                .map(|t| {
                    Ok((
                        t.get_id(),
                        ThreadMeta {
                            name: t.get_name()?.to_string()?,
                            native_id: t.get_native_id(),
                            ident: t.get_ident(),
                        },
                    ))
                })
                .collect::<capnp::Result<Vec<_>>>()?;
            let sources = root
                .get_sources()?
                .iter()
                .map(|s| {
                    Ok((
                        s.get_file(),
                        StoredSource {
                            compression: s.get_compression()?,
                            raw_len: s.get_raw_len() as usize,
                            data: s.get_text()?.to_vec(),
                        },
                    ))
                })
                .collect::<capnp::Result<Vec<_>>>()?;
            let meta = read_key_values(root.get_meta()?)?;
            Ok((strings, codes, threads, sources, meta))
        })()
        .map_err(|e| e.to_string())?;
        let (strings, codes, threads, sources, meta) = parsed;
        let first = root.get_first_string_id();
        if (first as usize) > self.strings.len() + MAX_ID_GAP {
            return Err(format!(
                "string id {first} jumps far past the {} known",
                self.strings.len()
            ));
        }
        for (i, s) in strings.into_iter().enumerate() {
            let id =
                u32::try_from(first as usize + i).map_err(|_| "string id overflows".to_string())?;
            define(&mut self.strings, id, s)?;
        }
        for (id, code) in codes {
            define(&mut self.codes, id, code)?;
        }
        for (id, thread) in threads {
            define(&mut self.threads, id, thread)?;
        }
        self.sources.extend(sources);
        self.meta.extend(meta);
        Ok(())
    }

    /// The interned string `id`.
    pub fn string(&self, id: u32) -> Option<&str> {
        self.strings.get(id as usize)?.as_deref()
    }

    /// A "string id + 1" field: `None` for 0 or an unknown id.
    pub fn optional_string(&self, id_plus_one: u32) -> Option<&str> {
        self.string(id_plus_one.checked_sub(1)?)
    }

    /// Number of string ids (some may be undefined after damage).
    pub fn string_count(&self) -> usize {
        self.strings.len()
    }

    /// The code object `id`.
    pub fn code(&self, id: u32) -> Option<&CodeInfo> {
        self.codes.get(id as usize)?.as_ref()
    }

    /// Every defined code object with its id.
    pub fn codes(&self) -> impl Iterator<Item = (u32, &CodeInfo)> {
        self.codes
            .iter()
            .enumerate()
            .filter_map(|(id, c)| Some((id as u32, c.as_ref()?)))
    }

    /// The thread `id`.
    pub fn thread(&self, id: u32) -> Option<&ThreadMeta> {
        self.threads.get(id as usize)?.as_ref()
    }

    /// Every defined thread with its id.
    pub fn threads(&self) -> impl Iterator<Item = (u32, &ThreadMeta)> {
        self.threads
            .iter()
            .enumerate()
            .filter_map(|(id, t)| Some((id as u32, t.as_ref()?)))
    }

    /// String ids of the files whose source text is stored, ascending.
    pub fn source_files(&self) -> impl Iterator<Item = u32> + '_ {
        self.sources.keys().copied()
    }

    /// The stored source text of file `file` (a string id).
    pub fn source(&self, file: u32) -> Option<Result<String, String>> {
        let stored = self.sources.get(&file)?;
        let mut scratch = Vec::new();
        Some(
            encoding::decompress(
                stored.compression,
                &stored.data,
                stored.raw_len,
                &mut scratch,
            )
            .and_then(|bytes| {
                String::from_utf8(bytes.to_vec()).map_err(|_| "source is not UTF-8".into())
            }),
        )
    }

    /// Key/value facts in the order they were written (later ones win).
    pub fn meta(&self) -> &[(String, String)] {
        &self.meta
    }
}
