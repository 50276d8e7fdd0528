//! `kalmar-objectstore-tool`: offline access to a Kalmar object store.
//!
//! Exit status: 0 success, 1 failure (message on stderr), 2 bad usage,
//! 4 fsck found problems.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use kalmar_objectstore::device::{UringDevice, UringOptions};
use kalmar_objectstore::{
    inspect, meta, Bytes, CollectionId, MkfsOptions, MountOptions, ObjectId, ObjectStore,
    StoreError, Transaction,
};
use serde::Serialize;
use uuid::Uuid;

/// Bytes per transaction when `put` copies a file in.
const PUT_CHUNK_BYTES: usize = 16 << 20;
/// Bytes per read when `get` copies an object out.
const GET_CHUNK_BYTES: u64 = 16 << 20;
/// Objects per `collection_list` page.
const LIST_PAGE: usize = 1024;
const EXIT_FSCK_PROBLEMS: u8 = 4;

#[derive(Parser)]
#[command(
    name = "kalmar-objectstore-tool",
    version,
    about = "Offline access to a Kalmar object store",
    long_about = "Offline access to a Kalmar object store: an OSD's device (its OSD \
stopped) or a kalmar-nbd --store device. It checks the store (fsck), lists \
and copies objects in and out, and shows the label, superblocks and \
journal. It takes the store's lock, so it never changes a device that \
another process has open.",
    after_help = "Examples:
  systemctl stop kalmar-osd@3
  kalmar-objectstore-tool --device /var/lib/kalmar/osd/kalmar-3/block fsck --deep
  kalmar-objectstore-tool --device /var/lib/kalmar/osd/kalmar-3/block list-collections
  kalmar-objectstore-tool --device /var/lib/kalmar/osd/kalmar-3/block list 1.0 --digest
  kalmar-objectstore-tool --device /var/lib/kalmar/osd/kalmar-3/block dump-journal

See also:
kalmar-osd(8), kalmar-nbd(8)."
)]
struct Cli {
    /// The block device or file holding the store.
    #[arg(long, value_name = "PATH")]
    device: PathBuf,
    /// Metadata database directory (default: <device>.db or the path recorded at mkfs).
    #[arg(long, value_name = "DIR", global = true)]
    db_path: Option<PathBuf>,
    /// Output format of data.
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Plain, global = true)]
    format: Format,
    /// Log level (error, warn, info, debug); KALMAR_LOG refines it.
    #[arg(long, default_value = "warn", global = true)]
    log_level: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Plain,
    Json,
    JsonPretty,
}

#[derive(Subcommand)]
enum Cmd {
    /// Format the device as an empty store.
    Mkfs {
        /// Cluster fsid (random if not given).
        #[arg(long)]
        fsid: Option<Uuid>,
        /// This OSD's uuid (random if not given).
        #[arg(long)]
        osd_uuid: Option<Uuid>,
        /// Journal size, e.g. 256M (default 1/16 of the device, 1M..1G).
        #[arg(long, value_parser = parse_size)]
        journal_size: Option<u64>,
        /// Create or extend a regular file to this size first, e.g. 10G.
        #[arg(long, value_parser = parse_size)]
        size: Option<u64>,
        /// Overwrite an existing store.
        #[arg(long)]
        force: bool,
    },
    /// Check the store; non-zero exit (4) when anything is wrong.
    Fsck {
        /// Also read every data block and verify its checksum.
        #[arg(long)]
        deep: bool,
    },
    /// List collections.
    ListCollections,
    /// List the objects of a collection.
    List {
        collection: String,
        /// Also read each object's data and show its crc32c, to compare
        /// replicas offline.
        #[arg(long)]
        digest: bool,
    },
    /// Copy an object's data to FILE ("-" for stdout).
    Get {
        collection: String,
        object: String,
        file: PathBuf,
    },
    /// Replace an object's data with FILE ("-" for stdin); creates the collection if missing.
    Put {
        collection: String,
        object: String,
        file: PathBuf,
    },
    /// Where each data block of an object lives on the device (offset,
    /// checksum), to inspect or damage one on purpose.
    Blocks { collection: String, object: String },
    /// Remove an object.
    Rm { collection: String, object: String },
    /// Show the label, superblocks and the journal records replay would apply.
    DumpJournal,
    /// The meta collection.
    Meta {
        #[command(subcommand)]
        cmd: MetaCmd,
    },
}

#[derive(Subcommand)]
enum MetaCmd {
    /// Stored osdmap epochs and the OSD superblock.
    List,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let m = match s[i..]
                .to_ascii_uppercase()
                .trim_end_matches("IB")
                .trim_end_matches('B')
            {
                "" => 1u64,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1 << 40,
                other => return Err(format!("unknown size unit {other:?} (use K, M, G or T)")),
            };
            (&s[..i], m)
        }
        None => (s, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 4096, 512M or 10G"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s} is too large"))
}

fn print<T: Serialize>(format: Format, value: &T, plain: impl FnOnce() -> String) -> Result<()> {
    let text = match format {
        Format::Plain => plain(),
        Format::Json => serde_json::to_string(value)?,
        Format::JsonPretty => serde_json::to_string_pretty(value)?,
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", text.trim_end())?;
    Ok(())
}

fn mount(cli: &Cli) -> Result<ObjectStore> {
    let opts = MountOptions {
        db_path: cli.db_path.clone(),
        ..MountOptions::default()
    };
    ObjectStore::mount(&cli.device, &opts)
        .with_context(|| format!("cannot mount {}", cli.device.display()))
}

fn cid(s: &str) -> Result<CollectionId> {
    CollectionId::new(s).map_err(Into::into)
}

fn oid(s: &str) -> Result<ObjectId> {
    ObjectId::new(s).map_err(Into::into)
}

fn mkfs(
    cli: &Cli,
    fsid: Option<Uuid>,
    osd_uuid: Option<Uuid>,
    journal: Option<u64>,
    size: Option<u64>,
    force: bool,
) -> Result<()> {
    if let Some(size) = size {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&cli.device)
            .with_context(|| format!("cannot create {}", cli.device.display()))?;
        let meta = f.metadata()?;
        if !meta.is_file() {
            bail!(
                "--size only works on a regular file, {} is not one",
                cli.device.display()
            );
        }
        if meta.len() < size {
            f.set_len(size)?;
        }
    }
    let mut opts = MkfsOptions::new(
        fsid.unwrap_or_else(Uuid::new_v4),
        osd_uuid.unwrap_or_else(Uuid::new_v4),
    );
    opts.journal_bytes = journal;
    opts.db_path = cli.db_path.clone();
    opts.force = force;
    ObjectStore::mkfs(&cli.device, &opts)
        .with_context(|| format!("mkfs of {} failed", cli.device.display()))?;
    #[derive(Serialize)]
    struct Out {
        fsid: Uuid,
        osd_uuid: Uuid,
    }
    let out = Out {
        fsid: opts.fsid,
        osd_uuid: opts.osd_uuid,
    };
    print(cli.format, &out, || {
        format!(
            "formatted {}: fsid {} osd uuid {}",
            cli.device.display(),
            out.fsid,
            out.osd_uuid
        )
    })
}

/// crc32c of an object's whole data, read in bounded chunks.
fn data_crc32c(store: &ObjectStore, c: &CollectionId, o: &ObjectId, size: u64) -> Result<u32> {
    let mut crc = 0u32;
    let mut off = 0;
    while off < size {
        let chunk = store.read(c, o, off, GET_CHUNK_BYTES.min(size - off))?;
        if chunk.is_empty() {
            bail!("{}: data ends at {off} of {size} bytes", o.to_display());
        }
        crc = crc32c::crc32c_append(crc, &chunk);
        off += chunk.len() as u64;
    }
    Ok(crc)
}

fn list(store: &ObjectStore, format: Format, coll: &str, digest: bool) -> Result<()> {
    let c = cid(coll)?;
    #[derive(Serialize)]
    struct Entry {
        name: String,
        size_bytes: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        data_crc32c: Option<u32>,
    }
    let mut entries = Vec::new();
    let mut start: Option<ObjectId> = None;
    loop {
        let (names, next) = store.collection_list(&c, start.as_ref(), LIST_PAGE)?;
        for o in names {
            let size_bytes = store.stat(&c, &o)?.size_bytes;
            let data_crc32c = if digest {
                Some(data_crc32c(store, &c, &o, size_bytes)?)
            } else {
                None
            };
            entries.push(Entry {
                name: o.to_display(),
                size_bytes,
                data_crc32c,
            });
        }
        match next {
            Some(n) => start = Some(n),
            None => break,
        }
    }
    print(format, &entries, || {
        entries
            .iter()
            .map(|e| match e.data_crc32c {
                Some(crc) => format!("{}\t{}\t{crc:08x}\n", e.name, e.size_bytes),
                None => format!("{}\t{}\n", e.name, e.size_bytes),
            })
            .collect()
    })
}

fn get(store: &ObjectStore, coll: &str, obj: &str, file: &Path) -> Result<()> {
    let (c, o) = (cid(coll)?, oid(obj)?);
    let size = store.stat(&c, &o)?.size_bytes;
    let mut out: Box<dyn Write> = if file == Path::new("-") {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(
            std::fs::File::create(file)
                .with_context(|| format!("cannot create {}", file.display()))?,
        )
    };
    let mut off = 0;
    while off < size {
        let chunk = store.read(&c, &o, off, GET_CHUNK_BYTES.min(size - off))?;
        if chunk.is_empty() {
            break;
        }
        out.write_all(&chunk)?;
        off += chunk.len() as u64;
    }
    out.flush()?;
    Ok(())
}

fn put(store: &ObjectStore, coll: &str, obj: &str, file: &Path) -> Result<()> {
    let (c, o) = (cid(coll)?, oid(obj)?);
    let mut input: Box<dyn Read> = if file == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
        )
    };
    let mut t = Transaction::new();
    if !store.collection_exists(&c)? {
        t.create_collection(&c);
    }
    t.truncate(&c, &o, 0);
    let mut off = 0u64;
    loop {
        let mut buf = Vec::with_capacity(PUT_CHUNK_BYTES);
        input
            .by_ref()
            .take(PUT_CHUNK_BYTES as u64)
            .read_to_end(&mut buf)?;
        let n = buf.len();
        if n > 0 {
            t.write(&c, &o, off, Bytes::from(buf));
            off += n as u64;
        }
        store.apply_transaction(std::mem::take(&mut t))?;
        if n < PUT_CHUNK_BYTES {
            return Ok(());
        }
    }
}

fn run(cli: &Cli) -> Result<u8> {
    match &cli.cmd {
        Cmd::Mkfs {
            fsid,
            osd_uuid,
            journal_size,
            size,
            force,
        } => mkfs(cli, *fsid, *osd_uuid, *journal_size, *size, *force)?,
        Cmd::Fsck { deep } => {
            let store = mount(cli)?;
            let report = store.fsck(*deep)?;
            store.umount()?;
            print(cli.format, &report, || {
                let mut s = format!(
                    "fsck{}: {} collections, {} objects, {} data blocks; {} problems\n",
                    if *deep { " --deep" } else { "" },
                    report.collections,
                    report.objects,
                    report.mapped_blocks,
                    report.problems
                );
                for e in &report.errors {
                    s.push_str(&format!("  {e}\n"));
                }
                s
            })?;
            if !report.is_clean() {
                return Ok(EXIT_FSCK_PROBLEMS);
            }
        }
        Cmd::ListCollections => {
            let store = mount(cli)?;
            let colls: Vec<String> = store
                .list_collections()?
                .iter()
                .map(|c| c.to_string())
                .collect();
            store.umount()?;
            print(cli.format, &colls, || {
                colls.iter().map(|c| format!("{c}\n")).collect()
            })?;
        }
        Cmd::List { collection, digest } => {
            let store = mount(cli)?;
            list(&store, cli.format, collection, *digest)?;
            store.umount()?;
        }
        Cmd::Get {
            collection,
            object,
            file,
        } => {
            let store = mount(cli)?;
            get(&store, collection, object, file)?;
            store.umount()?;
        }
        Cmd::Put {
            collection,
            object,
            file,
        } => {
            let store = mount(cli)?;
            put(&store, collection, object, file)?;
            store.umount()?;
        }
        Cmd::Blocks { collection, object } => {
            let store = mount(cli)?;
            let blocks = store.block_map(&cid(collection)?, &oid(object)?);
            store.umount()?;
            let blocks = blocks?;
            print(cli.format, &blocks, || {
                blocks
                    .iter()
                    .map(|b| {
                        format!(
                            "block {} offset {} csum {:#010x}\n",
                            b.logical_block, b.device_offset, b.csum
                        )
                    })
                    .collect()
            })?;
        }
        Cmd::Rm { collection, object } => {
            let store = mount(cli)?;
            let mut t = Transaction::new();
            t.remove(&cid(collection)?, &oid(object)?);
            store.apply_transaction(t)?;
            store.umount()?;
        }
        Cmd::DumpJournal => {
            let dev = UringDevice::open(&cli.device, UringOptions::default())?;
            let dump = inspect::dump_journal(&dev)?;
            print(cli.format, &dump, || {
                let mut s = format!(
                    "label: fsid {} osd uuid {} device {} bytes, journal {} bytes at {}, data at {}\n",
                    dump.label.fsid,
                    dump.label.osd_uuid,
                    dump.label.device_bytes,
                    dump.label.journal_bytes,
                    dump.label.journal_offset,
                    dump.label.data_offset
                );
                // A label of another format does not decode: this is it.
                s.push_str(&format!(
                    "format {}, journal sector {} bytes\n",
                    kalmar_objectstore::layout::FORMAT_VERSION,
                    dump.label.journal_sector
                ));
                for sb in &dump.superblocks {
                    let starts: Vec<String> = sb
                        .zones
                        .iter()
                        .map(|z| format!("sector {} seq {}", z.pos, z.seq))
                        .collect();
                    s.push_str(&format!(
                        "superblock copy {}: seq {} generation {} clean {} zones [{}]\n",
                        sb.slot,
                        sb.sb_seq,
                        sb.generation,
                        sb.clean_umount,
                        starts.join(", ")
                    ));
                }
                for z in &dump.zones {
                    s.push_str(&format!("zone {}:\n", z.zone));
                    for r in &z.records {
                        s.push_str(&format!(
                            "  record seq {} gen {} at sector {} ({} sectors): {} txns, {} kv ops, {} deferred blocks, {} allocated / {} freed extents\n",
                            r.seq, r.generation, r.sector, r.sectors, r.txns, r.kv_ops, r.deferred_blocks,
                            r.allocated_extents, r.freed_extents
                        ));
                        for c in &r.changes {
                            s.push_str(&format!("      {c}\n"));
                        }
                    }
                    s.push_str(&format!(
                        "  end at sector {} (next seq {}): {}\n",
                        z.end_sector, z.end_seq, z.end_reason
                    ));
                    if let Some(l) = z.later_valid_record_seq {
                        s.push_str(&format!(
                            "  CORRUPT: a valid record seq {l} follows the damaged one\n"
                        ));
                    }
                }
                s
            })?;
        }
        Cmd::Meta { cmd: MetaCmd::List } => {
            let store = mount(cli)?;
            let listing = meta::list(&store)?;
            store.umount()?;
            print(cli.format, &listing, || {
                let mut s = format!(
                    "full maps: {:?}\nincremental maps: {:?}\n",
                    listing.full_maps, listing.incremental_maps
                );
                match &listing.superblock {
                    Some(sb) => s.push_str(&format!(
                        "superblock: cluster fsid {} osd fsid {} whoami {} oldest_map {} newest_map {}\n",
                        sb.cluster_fsid, sb.osd_fsid, sb.whoami, sb.oldest_map, sb.newest_map
                    )),
                    None => s.push_str("superblock: none\n"),
                }
                s
            })?;
        }
    }
    Ok(0)
}

fn main() -> ExitCode {
    kalmar_common::manpage::print_if_asked(Cli::command);
    let cli = Cli::parse();
    let _ = kalmar_common::logging::init(&cli.log_level, None);
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let mut msg = format!("kalmar-objectstore-tool: {e}");
            for cause in e.chain().skip(1) {
                msg.push_str(&format!(": {cause}"));
            }
            if e.downcast_ref::<StoreError>()
                .is_some_and(|s| matches!(s, StoreError::Device(_)))
            {
                msg.push_str(" (check the --device path and that no other process uses it)");
            }
            eprintln!("{msg}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("x").is_err());
    }
}
