//! Argon2id password hashing, run on a few dedicated threads so a login never stalls the
//! async workers that carry everyone's messages.
//!
//! Why not tokio's blocking pool: each hash takes 19 MiB of working memory, and the allocator
//! keeps such blocks per thread. Spread over the blocking pool's (up to 512) threads, a burst
//! of sign-ups left the server holding gigabytes (measured: ~2 GiB after 1000 registrations).
//! A fixed pool of one thread per core bounds both that memory and the CPU that hashing can
//! take from message delivery.
//!
//! Why each thread reuses one buffer: the crate's own `hash_password` / `verify_password`
//! allocate a fresh 19 MiB block buffer for every hash and free it afterwards. Freeing that
//! mmap-served block raises glibc's dynamic mmap threshold to 19 MiB, so every later buffer
//! comes from the malloc arenas, which keep the freed memory: after 10,000 registrations the
//! server's RSS was 416 MiB with ~27 MiB in use (27 MiB in total with the threshold pinned
//! through `GLIBC_TUNABLES`; `mallopt` would need unsafe code). So each hashing thread owns
//! one [`HashMemory`], allocated once and never freed, and hashes into it with
//! `Argon2::hash_password_into_with_memory`. A stored hash with larger parameters grows it for
//! that job; it then goes back to the default size, never below. Measured after the change:
//! 66 MiB of RSS after the same 10,000 registrations, 38 MiB of it these two buffers.
//!
//! Why the queue is bounded: hashing is the most expensive thing an unauthenticated client can
//! ask for. Beyond `PASSWORD_HASH_QUEUE` waiting jobs a new one is refused at once
//! ([`HashError::Busy`], answered 503 with `Retry-After`) instead of queueing work, memory and
//! latency without limit for everyone who logs in after it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;

use tokio::sync::oneshot;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::error::ApiError;

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every hashing thread is busy and the queue is full: retry shortly.
    #[error("password hashing is at capacity")]
    Busy,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl From<HashError> for ApiError {
    fn from(err: HashError) -> Self {
        match err {
            HashError::Busy => ApiError::Busy {
                retry_after_secs: 1,
            },
            HashError::Failed(cause) => ApiError::Internal(cause),
        }
    }
}

/// Hashes and verifies passwords. Cheap to clone.
#[derive(Clone)]
pub struct Passwords {
    pool: HashPool,
    /// A hash of a random password nobody knows, made with the same parameters as real ones:
    /// logins for unknown users verify against it, so both failures take the same time.
    dummy_hash: Arc<str>,
}

impl Passwords {
    /// How busy the hashing threads are.
    pub fn load(&self) -> HashLoad {
        self.pool.load()
    }

    /// Starts the hashing threads; at most `queue` (at least 1) jobs wait for one of them.
    pub async fn new(queue: usize) -> anyhow::Result<Self> {
        let pool = HashPool::start(queue.max(1))?;
        let unguessable = uuid::Uuid::new_v4().to_string();
        let dummy_hash = pool
            .run(move |memory| hash(&unguessable, memory))
            .await??
            .into();
        Ok(Passwords { pool, dummy_hash })
    }

    /// Hashes with Argon2id and the crate's recommended parameters.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        Ok(self
            .pool
            .run(move |memory| hash(&password, memory))
            .await??)
    }

    /// Checks a password against a stored hash, or against the dummy for an unknown user.
    ///
    /// A stored hash that cannot be read (not a PHC string, or one whose algorithm, version,
    /// parameters, salt or output Argon2 cannot use) is an error, not a mismatch.
    pub async fn verify(
        &self,
        password: String,
        stored_hash: Option<String>,
    ) -> Result<bool, HashError> {
        let known_user = stored_hash.is_some();
        let hash = stored_hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let matches = self
            .pool
            .run(move |memory| verify(&password, &hash, memory))
            .await??;
        Ok(known_user && matches)
    }
}

/// What `Argon2::default().hash_password(..)` returns as a PHC string: a random salt from the
/// same generator and of the same length, the default algorithm, version and parameters.
fn hash(password: &str, memory: &mut HashMemory) -> anyhow::Result<String> {
    let salt = argon2::password_hash::try_generate_salt()
        .map_err(|err| anyhow::anyhow!("generating salt: {err}"))?;
    let salt = Salt::new(&salt).map_err(|err| anyhow::anyhow!("generating salt: {err}"))?;
    let argon2 = Argon2::default();
    let output = compute(&argon2, password.as_bytes(), &salt, memory)
        .map_err(|err| anyhow::anyhow!("hashing password: {err}"))?;
    let params = ParamsString::try_from(argon2.params())
        .map_err(|err| anyhow::anyhow!("hashing password: {err}"))?;
    let hash = PasswordHash {
        algorithm: Algorithm::default().ident(),
        version: Some(Version::default().into()),
        params,
        salt: Some(salt),
        hash: Some(output),
    };
    Ok(hash.to_string())
}

/// What `Argon2::default().verify_password(..)` checks: the stored hash's algorithm, version,
/// parameters (including its output length) and salt, then a constant-time comparison of the
/// outputs (`Output`'s `PartialEq` is constant-time).
fn verify(password: &str, stored: &str, memory: &mut HashMemory) -> anyhow::Result<bool> {
    let unreadable = |err: &dyn std::fmt::Display| anyhow::anyhow!("stored hash unreadable: {err}");
    let parsed = PasswordHash::new(stored).map_err(|err| unreadable(&err))?;
    let algorithm =
        Algorithm::try_from(parsed.algorithm.as_str()).map_err(|err| unreadable(&err))?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|err| unreadable(&err))?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(|err| unreadable(&err))?;
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return Err(unreadable(&"no salt or no output"));
    };
    let computed = compute(
        &Argon2::new(algorithm, version, params),
        password.as_bytes(),
        salt,
        memory,
    )
    .map_err(|err| anyhow::anyhow!("verifying password: {err}"))?;
    Ok(*expected == computed)
}

/// `Argon2::hash_password_with_salt`'s output, computed in `memory` instead of a fresh buffer.
fn compute(
    argon2: &Argon2<'_>,
    password: &[u8],
    salt: &Salt,
    memory: &mut HashMemory,
) -> anyhow::Result<Output> {
    let output_len = argon2
        .params()
        .output_len()
        .unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let mut buffer = [0u8; Output::MAX_LENGTH];
    let out = buffer
        .get_mut(..output_len)
        .ok_or_else(|| anyhow::anyhow!("output length {output_len} too long"))?;
    let blocks = memory.blocks(argon2.params().block_count())?;
    argon2
        .hash_password_into_with_memory(password, salt, &mut *out, blocks)
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    Output::new(out).map_err(|err| anyhow::anyhow!("{err}"))
}

/// Blocks of Argon2 working memory the default parameters need (19 MiB).
const DEFAULT_BLOCKS: usize = Params::DEFAULT.block_count();

/// One hashing thread's Argon2 working memory, kept for the thread's lifetime (see the module
/// docs for why).
struct HashMemory {
    blocks: Vec<Block>,
}

impl HashMemory {
    fn new() -> Self {
        HashMemory { blocks: Vec::new() }
    }

    /// The first `count` blocks, allocating the buffer on first use (at least the default
    /// size) and growing it if `count` is larger. Argon2 writes every block before reading
    /// it, so what earlier hashes left there does not matter.
    fn blocks(&mut self, count: usize) -> anyhow::Result<&mut [Block]> {
        let wanted = count.max(DEFAULT_BLOCKS);
        if self.blocks.len() < wanted {
            self.blocks
                .try_reserve_exact(wanted - self.blocks.len())
                .map_err(|err| anyhow::anyhow!("Argon2 memory for {count} KiB: {err}"))?;
            self.blocks.resize(wanted, Block::new());
        }
        self.blocks
            .get_mut(..count)
            .ok_or_else(|| anyhow::anyhow!("Argon2 memory for {count} KiB missing"))
    }

    /// Gives back what a hash with larger than default parameters added, keeping the default
    /// size (in place: the allocation is resized, never freed).
    fn trim(&mut self) {
        if self.blocks.len() > DEFAULT_BLOCKS {
            self.blocks.truncate(DEFAULT_BLOCKS);
            self.blocks.shrink_to(DEFAULT_BLOCKS);
        }
    }
}

type Job = Box<dyn FnOnce(&mut HashMemory) + Send>;

/// One thread per core, taking hashing jobs from a shared, bounded queue; each thread lends
/// its own [`HashMemory`] to the jobs it runs.
#[derive(Clone)]
struct HashPool {
    jobs: mpsc::SyncSender<Job>,
    load: Arc<Load>,
}

/// Jobs waiting for a hashing thread and jobs being run, for operators and tests.
#[derive(Debug, Default)]
struct Load {
    queued: AtomicUsize,
    running: AtomicUsize,
}

/// A snapshot of the hashing threads' load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashLoad {
    /// Jobs waiting in the queue.
    pub queued: usize,
    /// Jobs a thread is working on.
    pub running: usize,
    /// Hashing threads.
    pub threads: usize,
}

impl HashPool {
    fn start(queue: usize) -> anyhow::Result<Self> {
        let (jobs, queue) = mpsc::sync_channel::<Job>(queue);
        let queue = Arc::new(Mutex::new(queue));
        let load = Arc::new(Load::default());
        let threads = thread::available_parallelism().map_or(2, usize::from);
        for index in 0..threads {
            let queue = queue.clone();
            let load = load.clone();
            thread::Builder::new()
                .name(format!("argon2-{index}"))
                .spawn(move || {
                    let mut memory = HashMemory::new();
                    loop {
                        // The lock is held only while taking a job, never while hashing.
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => {
                                load.queued.fetch_sub(1, Ordering::Relaxed);
                                load.running.fetch_add(1, Ordering::Relaxed);
                                job(&mut memory);
                                load.running.fetch_sub(1, Ordering::Relaxed);
                                memory.trim();
                            }
                            Err(_) => return, // every `Passwords` is gone
                        }
                    }
                })?;
        }
        Ok(HashPool { jobs, load })
    }

    fn load(&self) -> HashLoad {
        HashLoad {
            queued: self.load.queued.load(Ordering::Relaxed),
            running: self.load.running.load(Ordering::Relaxed),
            threads: thread::available_parallelism().map_or(2, usize::from),
        }
    }

    /// Runs `work` on a hashing thread, or refuses at once when the queue is full.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut HashMemory) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _ = reply.send(work(memory));
        });
        // Counted before it can be picked up, so `queued` never goes below zero.
        self.load.queued.fetch_add(1, Ordering::Relaxed);
        self.jobs
            .try_send(job)
            .inspect_err(|_| {
                self.load.queued.fetch_sub(1, Ordering::Relaxed);
            })
            .map_err(|err| match err {
                TrySendError::Full(_) => HashError::Busy,
                TrySendError::Disconnected(_) => {
                    anyhow::anyhow!("password hashing threads stopped").into()
                }
            })?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("password hashing thread failed").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
    use futures_util::FutureExt as _;

    const PASSWORD: &str = "correct horse battery staple";

    /// A stored hash made by the stock crate API with explicit algorithm, version and params.
    fn stock_hash(algorithm: Algorithm, version: Version, params: Params) -> String {
        Argon2::new(algorithm, version, params)
            .hash_password(PASSWORD.as_bytes())
            .expect("stock hash")
            .to_string()
    }

    #[tokio::test]
    async fn hash_then_verify_accepts_right_password_only() {
        let passwords = Passwords::new(16).await.expect("pool");
        let hash = passwords.hash(PASSWORD.into()).await.expect("hash");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        let ok = passwords.verify(PASSWORD.into(), Some(hash.clone()));
        assert!(ok.await.expect("verify"));
        let wrong = passwords.verify("Tr0ub4dor&3".into(), Some(hash.clone()));
        assert!(!wrong.await.expect("verify"));
        // A fresh salt every time.
        let again = passwords.hash(PASSWORD.into()).await.expect("hash");
        assert_ne!(hash, again);
    }

    #[tokio::test]
    async fn stock_default_hash_verifies() {
        let passwords = Passwords::new(16).await.expect("pool");
        let stored = Argon2::default()
            .hash_password(PASSWORD.as_bytes())
            .expect("stock hash")
            .to_string();
        let ok = passwords.verify(PASSWORD.into(), Some(stored.clone()));
        assert!(ok.await.expect("verify"));
        let wrong = passwords.verify("wrong".into(), Some(stored));
        assert!(!wrong.await.expect("verify"));
    }

    #[tokio::test]
    async fn new_hash_verifies_with_stock_verifier() {
        let passwords = Passwords::new(16).await.expect("pool");
        let hash = passwords.hash(PASSWORD.into()).await.expect("hash");
        let parsed = PasswordHash::new(&hash).expect("parse");
        let stock = Argon2::default();
        assert_eq!(stock.verify_password(PASSWORD.as_bytes(), &parsed), Ok(()));
        assert!(stock.verify_password(b"wrong", &parsed).is_err());
        // Same layout as the stock output: default params, 16-byte salt, 32-byte output.
        let default = Params::default();
        let expected = Params::new(
            default.m_cost(),
            default.t_cost(),
            default.p_cost(),
            Some(32),
        );
        assert_eq!(Params::try_from(&parsed).ok(), expected.ok());
        assert_eq!(parsed.salt.map(|salt| salt.len()), Some(16));
    }

    #[tokio::test]
    async fn smaller_stored_params_verify() {
        let passwords = Passwords::new(16).await.expect("pool");
        let cases = [
            (
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(8, 1, 1, None),
            ),
            (
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(64, 3, 2, Some(16)),
            ),
            (
                Algorithm::Argon2i,
                Version::V0x10,
                Params::new(16, 2, 1, None),
            ),
            (
                Algorithm::Argon2d,
                Version::V0x13,
                Params::new(32, 1, 4, Some(64)),
            ),
        ];
        for (algorithm, version, params) in cases {
            let stored = stock_hash(algorithm, version, params.expect("params"));
            let ok = passwords.verify(PASSWORD.into(), Some(stored.clone()));
            assert!(ok.await.expect("verify"), "{stored}");
            let wrong = passwords.verify("wrong".into(), Some(stored.clone()));
            assert!(!wrong.await.expect("verify"), "{stored}");
        }
    }

    #[tokio::test]
    async fn larger_stored_params_verify() {
        let passwords = Passwords::new(16).await.expect("pool");
        let params = Params::new(32 * 1024, 1, 1, None).expect("params");
        let stored = stock_hash(Algorithm::Argon2id, Version::V0x13, params);
        let ok = passwords.verify(PASSWORD.into(), Some(stored.clone()));
        assert!(ok.await.expect("verify"));
        let wrong = passwords.verify("wrong".into(), Some(stored));
        assert!(!wrong.await.expect("verify"));
        // Default-size hashing still works after the buffer grew and was trimmed.
        let hash = passwords.hash(PASSWORD.into()).await.expect("hash");
        let ok = passwords.verify(PASSWORD.into(), Some(hash));
        assert!(ok.await.expect("verify"));
    }

    #[test]
    fn memory_grows_for_larger_params_and_trims_back_to_default() {
        let mut memory = HashMemory::new();
        assert_eq!(memory.blocks(8).expect("blocks").len(), 8);
        assert_eq!(memory.blocks.len(), DEFAULT_BLOCKS);
        memory.trim();
        assert_eq!(memory.blocks.len(), DEFAULT_BLOCKS);
        let larger = 32 * 1024;
        assert_eq!(memory.blocks(larger).expect("blocks").len(), larger);
        assert_eq!(memory.blocks.len(), larger);
        memory.trim();
        assert_eq!(memory.blocks.len(), DEFAULT_BLOCKS);
        assert_eq!(memory.blocks.capacity(), DEFAULT_BLOCKS);
    }

    #[tokio::test]
    async fn unreadable_stored_hash_is_an_error() {
        let passwords = Passwords::new(16).await.expect("pool");
        let valid = stock_hash(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8, 1, 1, None).expect("params"),
        );
        let unreadable = [
            "not a hash".to_owned(),
            String::new(),
            valid.replacen("argon2id", "scrypt", 1),
            valid.replacen("v=19", "v=7", 1),
            valid.replacen("m=8", "m=0", 1),
            // Salt and output missing.
            valid.splitn(5, '$').take(4).collect::<Vec<_>>().join("$"),
        ];
        for stored in unreadable {
            let result = passwords
                .verify(PASSWORD.into(), Some(stored.clone()))
                .await;
            assert!(result.is_err(), "{stored:?}: {result:?}");
        }
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let pool = HashPool::start(1).expect("pool");
        let threads = thread::available_parallelism().map_or(2, usize::from);
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = Arc::new(Mutex::new(released));
        let mut running = Vec::new();
        // One job per thread, each started before the next is submitted: all threads busy.
        for _ in 0..threads {
            let (started, has_started) = oneshot::channel();
            let released = released.clone();
            let pool = pool.clone();
            running.push(tokio::spawn(async move {
                pool.run(move |_| {
                    let _ = started.send(());
                    let _ = released.lock().map(|rx| rx.recv());
                })
                .await
            }));
            has_started.await.expect("job started");
        }
        let queued = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(|_| ()).await }
        });
        tokio::task::yield_now().await;
        let mut refused = false;
        for _ in 0..100 {
            match pool.run(|_| ()).now_or_never() {
                Some(Err(HashError::Busy)) => {
                    refused = true;
                    break;
                }
                _ => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
        assert!(refused, "a job beyond threads + queue is refused");
        for _ in 0..threads {
            release.send(()).expect("release");
        }
        for job in running {
            assert!(job.await.expect("join").is_ok());
        }
        assert!(queued.await.expect("join").is_ok(), "the queued job ran");
    }

    #[tokio::test]
    async fn unknown_user_is_rejected() {
        let passwords = Passwords::new(16).await.expect("pool");
        assert!(
            !passwords
                .verify(PASSWORD.into(), None)
                .await
                .expect("verify")
        );
        assert!(!passwords.verify(String::new(), None).await.expect("verify"));
    }
}
