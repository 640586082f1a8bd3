//! Compressing clusters ahead of the conversion, while the disk is still
//! being written (issue 18: "compress while the disk is being written").
//!
//! The conversion is the slow part of a compressed qcow2 and keeps every
//! core busy; before it, while the assembler writes the tree into the raw
//! disk, one core works and the other waits. [`Ahead`] spends that core: a
//! thread reads the clusters the raw file already holds data for and
//! compresses them as the conversion would.
//!
//! Nothing it does can change the output. The conversion reads every
//! cluster again and takes a cluster compressed ahead only when the bytes
//! it reads now equal, byte for byte, the bytes that were compressed (kept
//! for that), and a cluster always compresses to the same bytes (a fresh
//! stream per cluster, [`super::compress_cluster`]). A cluster written
//! after it was read (file-system metadata written at the end, a cluster
//! the writer was still filling, the partition table) differs and is
//! compressed again. The thread reads through its own open file
//! description, so its `SEEK_DATA` scans never move the writer's offset.
//!
//! Memory is bounded: at most [`MAX_CLUSTERS`] clusters (128 MiB of
//! originals, plus their compressed bytes) are kept.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{compress_cluster, data_extents, is_zero, Qcow2Options, CLUSTER_SIZE};

/// Clusters kept at most (64 KiB each: 128 MiB).
pub const MAX_CLUSTERS: usize = 2048;
/// Clusters this close to the end of the last data extent are left alone
/// while the writer may still be filling them.
const FRONTIER: u64 = 16 * CLUSTER_SIZE;
/// How long the thread waits for more data when it has caught up.
const IDLE: Duration = Duration::from_millis(10);

/// One cluster compressed ahead: the bytes read, and what they compressed
/// to (None: not smaller than a cluster, stored uncompressed).
struct Entry {
    original: Box<[u8]>,
    compressed: Option<Vec<u8>>,
}

/// What the thread compressed, for the conversion.
#[derive(Default)]
pub struct Compressed {
    clusters: HashMap<u64, Entry>,
}

/// The running thread; [`Ahead::finish`] stops it and hands over its work.
pub struct Ahead {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    thread: Option<JoinHandle<Compressed>>,
}

impl Ahead {
    /// Starts compressing the clusters of `raw` (a fresh open of the disk
    /// being written) as `opts` asks. With compression off there is nothing
    /// to do ahead, and no thread; nor when no thread can be started (the
    /// conversion then does all the work, as before).
    pub fn start(raw: File, opts: &Qcow2Options) -> Ahead {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let thread = if opts.compress {
            let (stop, done, opts) = (stop.clone(), done.clone(), opts.clone());
            std::thread::Builder::new()
                .name("qcow2-ahead".into())
                .spawn(move || run(&raw, &opts, &stop, &done))
                .ok()
        } else {
            None
        };
        Ahead { stop, done, thread }
    }

    /// Clusters compressed so far.
    pub fn compressed(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    /// Stops the thread (after the cluster in hand) and returns its work.
    pub fn finish(mut self) -> Compressed {
        self.stop.store(true, Ordering::Relaxed);
        self.join()
    }

    fn join(&mut self) -> Compressed {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(c)) => c,
            // A panic in the thread loses only the head start.
            Some(Err(_)) | None => Compressed::default(),
        }
    }
}

impl Drop for Ahead {
    /// An assembly that fails stops the thread too.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.join();
    }
}

impl Compressed {
    /// The compressed form of cluster `idx` when `now` (the whole cluster
    /// buffer, as the conversion read it) is exactly what was compressed:
    /// `Some(Some(bytes))` compressed, `Some(None)` incompressible, `None`
    /// not known (compress it).
    pub(super) fn lookup(&self, idx: u64, now: &[u8]) -> Option<Option<Vec<u8>>> {
        let e = self.clusters.get(&idx)?;
        (*e.original == *now).then(|| e.compressed.clone())
    }

    /// Clusters held.
    pub fn len(&self) -> usize {
        self.clusters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clusters.is_empty()
    }
}

/// The thread: rescan the data extents, compress the clusters not seen yet,
/// wait when caught up; until stopped, out of budget, or the file fails.
fn run(raw: &File, opts: &Qcow2Options, stop: &AtomicBool, done: &AtomicUsize) -> Compressed {
    let mut out = Compressed::default();
    let mut seen: HashSet<u64> = HashSet::new();
    while !stop.load(Ordering::Relaxed) && out.clusters.len() < MAX_CLUSTERS {
        match pass(raw, opts, stop, done, &mut seen, &mut out) {
            Ok(0) => std::thread::sleep(IDLE),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    out
}

/// One scan of the file: compresses every whole cluster inside a data
/// extent (away from the writer's frontier) not seen before; returns how
/// many clusters it read.
fn pass(
    raw: &File,
    opts: &Qcow2Options,
    stop: &AtomicBool,
    done: &AtomicUsize,
    seen: &mut HashSet<u64>,
    out: &mut Compressed,
) -> io::Result<usize> {
    let size = raw.metadata()?.len();
    let extents = data_extents(raw, size)?;
    let frontier = extents
        .last()
        .map_or(0, |&(_, end)| end.saturating_sub(FRONTIER));
    let mut read = 0;
    let mut buf = vec![0u8; CLUSTER_SIZE as usize];
    for &(start, end) in &extents {
        let end = end.min(frontier);
        for idx in start.div_ceil(CLUSTER_SIZE)..end / CLUSTER_SIZE {
            if stop.load(Ordering::Relaxed) || out.clusters.len() >= MAX_CLUSTERS {
                return Ok(read);
            }
            if !seen.insert(idx) {
                continue;
            }
            raw.read_exact_at(&mut buf, idx * CLUSTER_SIZE)?;
            read += 1;
            if is_zero(&buf) {
                continue;
            }
            let compressed = compress_cluster(&buf, opts)?;
            out.clusters.insert(
                idx,
                Entry {
                    original: buf.clone().into_boxed_slice(),
                    compressed,
                },
            );
            done.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::qcow2::{write_qcow2, write_qcow2_ahead, Qcow2Compression};
    use std::time::Instant;

    const CLUSTERS: u64 = 64;

    /// Cluster `i`'s text: compressible, and different from every other.
    fn text(i: u64, salt: &str) -> Vec<u8> {
        let mut t = String::new();
        let mut n = 0u64;
        while t.len() < CLUSTER_SIZE as usize {
            t.push_str(&format!(
                "cluster {i} {salt} line {n}: {}\n",
                n * 7919 % 997
            ));
            n += 1;
        }
        t.into_bytes()[..CLUSTER_SIZE as usize].to_vec()
    }

    /// A thread that compressed clusters ahead gives the very bytes of a
    /// conversion without it; a cluster rewritten after it was compressed
    /// is compressed again, and the writer's frontier is left alone.
    #[test]
    fn clusters_compressed_ahead_change_nothing_but_the_work() {
        for compression in [Qcow2Compression::Zlib, Qcow2Compression::Zstd] {
            let d = tempfile::tempdir().unwrap();
            let raw = d.path().join("disk.raw");
            let f = File::create(&raw).unwrap();
            f.set_len(2 * CLUSTERS * CLUSTER_SIZE).unwrap();
            for i in 0..CLUSTERS {
                f.write_all_at(&text(i, "first"), i * CLUSTER_SIZE).unwrap();
            }
            let opts = Qcow2Options {
                compression,
                ..Qcow2Options::default()
            };
            let ahead = Ahead::start(File::open(&raw).unwrap(), &opts);
            let whole = CLUSTERS - FRONTIER / CLUSTER_SIZE;
            let t = Instant::now();
            while (ahead.compressed() as u64) < whole && t.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(5));
            }
            // The writer rewrites cluster 3, as a file system writes its
            // metadata at the end.
            f.write_all_at(&text(3, "second"), 3 * CLUSTER_SIZE)
                .unwrap();
            let held = ahead.finish();
            assert_eq!(
                held.len() as u64,
                whole,
                "{compression:?}: the frontier is left alone"
            );

            let (with, without) = (d.path().join("with.qcow2"), d.path().join("without.qcow2"));
            let st = write_qcow2_ahead(&raw, &with, &opts, Some(&held), &|_, _| {}).unwrap();
            let plain = write_qcow2(&raw, &without, &opts).unwrap();
            assert_eq!(st.clusters_ahead, whole - 1, "{compression:?}: {st:?}");
            assert_eq!(plain.clusters_ahead, 0);
            assert_eq!(st.clusters_compressed, CLUSTERS, "{compression:?}: {st:?}");
            assert!(
                std::fs::read(&with).unwrap() == std::fs::read(&without).unwrap(),
                "{compression:?}: the head start changed the output"
            );
        }
    }

    /// Without compression there is nothing to do ahead: no thread.
    #[test]
    fn uncompressed_starts_no_thread() {
        let d = tempfile::tempdir().unwrap();
        let raw = d.path().join("disk.raw");
        File::create(&raw).unwrap().set_len(CLUSTER_SIZE).unwrap();
        let opts = Qcow2Options {
            compress: false,
            ..Qcow2Options::default()
        };
        let ahead = Ahead::start(File::open(&raw).unwrap(), &opts);
        assert!(ahead.thread.is_none());
        assert!(ahead.finish().is_empty());
    }
}
