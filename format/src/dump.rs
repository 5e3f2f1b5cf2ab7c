//! A stable text rendering of a trace: every definition, chunk, event and
//! variable change, in file order. It contains no hash-map order, no clock
//! reading and no address, so it serves as the oracle of the golden-file
//! tests, and as `chronolog dump` for people.

use std::io::{self, Write};

use crate::chunk::ColumnMask;
use crate::event::{EventBatch, EventKind, VarChange};
use crate::reader::{FooterStatus, TraceReader};

/// Writes the whole dump: summary, every chunk, then damage.
pub fn dump(reader: &TraceReader, out: &mut dyn Write) -> io::Result<()> {
    write_summary(reader, out)?;
    for index in 0..reader.chunks().len() {
        write_chunk(reader, index, out)?;
    }
    write_damage(reader, out)
}

/// The header, metadata and index part of the dump.
pub fn write_summary(reader: &TraceReader, out: &mut dyn Write) -> io::Result<()> {
    let (major, minor) = reader.version();
    let header = reader.header();
    let tables = reader.tables();
    writeln!(
        out,
        "chronolog trace v{major}.{minor}, {} bytes",
        reader.file_len()
    )?;
    writeln!(out, "writer: {}", header.writer)?;
    writeln!(out, "start_unix_ns: {}", header.start_unix_ns)?;
    for (key, value) in &header.meta {
        writeln!(out, "header {key} = {value}")?;
    }
    let footer = match reader.footer_status() {
        FooterStatus::Intact => "intact".to_string(),
        FooterStatus::Missing => "missing (file scanned)".to_string(),
        FooterStatus::Damaged(reason) => format!("damaged (file scanned): {reason}"),
    };
    writeln!(out, "footer: {footer}")?;
    writeln!(out, "strings: {}", tables.string_count())?;
    for (id, code) in tables.codes() {
        writeln!(
            out,
            "code {id}: {} {}:{} (name {})",
            tables.string(code.qualname).unwrap_or("?"),
            tables.string(code.file).unwrap_or("?"),
            code.first_line,
            tables.string(code.name).unwrap_or("?"),
        )?;
    }
    for (id, thread) in tables.threads() {
        writeln!(
            out,
            "thread {id}: {} native_id={} ident={}",
            thread.name, thread.native_id, thread.ident
        )?;
    }
    for file in tables.source_files() {
        let name = tables.string(file).unwrap_or("?");
        match tables.source(file) {
            Some(Ok(text)) => writeln!(
                out,
                "source {name}: {} lines, {} bytes",
                text.lines().count(),
                text.len()
            )?,
            Some(Err(reason)) => writeln!(out, "source {name}: unreadable: {reason}")?,
            None => {}
        }
    }
    for (key, value) in tables.meta() {
        writeln!(out, "meta {key} = {value}")?;
    }
    writeln!(
        out,
        "chunks: {}, events: {}, variable changes: {}",
        reader.chunks().len(),
        reader.event_count(),
        reader.var_count()
    )
}

/// One chunk: its statistics, then its events with their variable changes.
pub fn write_chunk(reader: &TraceReader, index: usize, out: &mut dyn Write) -> io::Result<()> {
    let Some(entry) = reader.chunks().get(index) else {
        return Ok(());
    };
    let s = &entry.stats;
    write!(
        out,
        "chunk {index} at {} ({} bytes): {} events, {} variable changes, {} values, seq {}..={}, ts {}..={}",
        entry.offset,
        entry.length,
        s.event_count,
        s.var_count,
        s.value_count,
        s.first_seq,
        s.last_seq,
        s.min_ts_ns,
        s.max_ts_ns
    )?;
    let batch = match reader.read_chunk(index, ColumnMask::ALL) {
        Ok(batch) => batch,
        Err(e) => return writeln!(out, "\n  unreadable: {e}"),
    };
    writeln!(out)?;
    write_checkpoint(reader, &batch, out)?;
    write_events(reader, &batch, out)
}

fn write_checkpoint(reader: &TraceReader, b: &EventBatch, out: &mut dyn Write) -> io::Result<()> {
    let tables = reader.tables();
    let Some(ck) = &b.checkpoint else {
        return Ok(());
    };
    let mut var = 0;
    for i in 0..ck.len() {
        let thread = match ck.thread[i] {
            crate::Checkpoint::SUSPENDED => "suspended".to_string(),
            t => format!("T{t}"),
        };
        let function = tables
            .code(ck.code[i])
            .and_then(|c| tables.string(c.qualname))
            .map_or_else(|| format!("code#{}", ck.code[i]), str::to_string);
        writeln!(
            out,
            "  checkpoint {thread} frame={} depth={} {function}:{}",
            ck.frame[i], ck.depth[i], ck.line[i]
        )?;
        while var < ck.var_frame.len() && ck.var_frame[var] as usize == i {
            let name = tables.string(ck.var_name[var]).unwrap_or("?");
            let value = b.values.get(ck.var_value[var]).unwrap_or("");
            writeln!(out, "      {name} = {value}")?;
            var += 1;
        }
    }
    Ok(())
}

fn write_events(reader: &TraceReader, b: &EventBatch, out: &mut dyn Write) -> io::Result<()> {
    let tables = reader.tables();
    let mut var = 0;
    for i in 0..b.len() {
        let kind = EventKind::from_code(b.kind[i])
            .map_or_else(|| format!("kind{}", b.kind[i]), |k| k.name().into());
        let function = tables
            .code(b.code[i])
            .and_then(|c| tables.string(c.qualname))
            .map_or_else(|| format!("code#{}", b.code[i]), str::to_string);
        write!(
            out,
            "  {} +{} T{} {kind} frame={} depth={} {function}:{}",
            b.seq[i], b.ts_ns[i], b.thread[i], b.frame[i], b.depth[i], b.line[i]
        )?;
        if b.exc_id[i] != 0 {
            write!(out, " exc={}", b.exc_id[i])?;
        }
        if b.exc_context[i] != 0 {
            write!(out, " context={}", b.exc_context[i])?;
        }
        if let Some(value) = b.values.get(b.arg[i]) {
            write!(out, " arg={value}")?;
        }
        if let Some(type_name) = tables.optional_string(b.arg_type[i]) {
            write!(out, " ({type_name})")?;
        }
        writeln!(out)?;
        while var < b.var_len() && b.var_event[var] as usize == i {
            let change = VarChange::from_code(b.var_change[var]).map_or_else(
                || format!("change{}", b.var_change[var]),
                |c| c.name().into(),
            );
            write!(
                out,
                "      {change} {} = {}",
                tables.string(b.var_name[var]).unwrap_or("?"),
                b.values.get(b.var_value[var]).unwrap_or("-"),
            )?;
            if let Some(type_name) = tables.optional_string(b.var_type[var]) {
                write!(out, " ({type_name})")?;
            }
            writeln!(out)?;
            var += 1;
        }
    }
    Ok(())
}

/// Damage found while indexing (chunk decode failures appear with their chunk).
pub fn write_damage(reader: &TraceReader, out: &mut dyn Write) -> io::Result<()> {
    for damage in reader.damage() {
        writeln!(out, "damage: {damage}")?;
    }
    Ok(())
}
