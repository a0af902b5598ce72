//! Argon2id password hashing, run on a few dedicated threads so a login never stalls the
//! async workers that carry everyone's messages.
//!
//! Why not tokio's blocking pool: each hash takes 19 MiB of working memory, and the allocator
//! keeps such blocks per thread. Spread over the blocking pool's (up to 512) threads, a burst
//! of sign-ups left the server holding gigabytes (measured: ~2 GiB after 1000 registrations).
//! A fixed pool of one thread per core bounds both that memory and the CPU that hashing can
//! take from message delivery.

use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use tokio::sync::oneshot;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier, phc::PasswordHash};

/// Hashes and verifies passwords. Cheap to clone.
#[derive(Clone)]
pub struct Passwords {
    pool: HashPool,
    /// A hash of a random password nobody knows, made with the same parameters as real ones:
    /// logins for unknown users verify against it, so both failures take the same time.
    dummy_hash: Arc<str>,
}

impl Passwords {
    pub async fn new() -> anyhow::Result<Self> {
        let pool = HashPool::start()?;
        let unguessable = uuid::Uuid::new_v4().to_string();
        let dummy_hash = pool.run(move || hash(&unguessable)).await??.into();
        Ok(Passwords { pool, dummy_hash })
    }

    /// Hashes with Argon2id and the crate's recommended parameters.
    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        self.pool.run(move || hash(&password)).await?
    }

    /// Checks a password against a stored hash, or against the dummy for an unknown user.
    pub async fn verify(
        &self,
        password: String,
        stored_hash: Option<String>,
    ) -> anyhow::Result<bool> {
        let known_user = stored_hash.is_some();
        let hash = stored_hash.unwrap_or_else(|| self.dummy_hash.to_string());
        self.pool
            .run(move || {
                let parsed = PasswordHash::new(&hash)
                    .map_err(|err| anyhow::anyhow!("stored hash unreadable: {err}"))?;
                let matches = Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok();
                Ok(known_user && matches)
            })
            .await?
    }
}

fn hash(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|err| anyhow::anyhow!("hashing password: {err}"))
}

type Job = Box<dyn FnOnce() + Send>;

/// One thread per core, taking hashing jobs from a shared queue.
#[derive(Clone)]
struct HashPool {
    jobs: mpsc::Sender<Job>,
}

impl HashPool {
    fn start() -> anyhow::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let threads = thread::available_parallelism().map_or(2, usize::from);
        for index in 0..threads {
            let queue = queue.clone();
            thread::Builder::new()
                .name(format!("argon2-{index}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while taking a job, never while hashing.
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return, // every `Passwords` is gone
                        }
                    }
                })?;
        }
        Ok(HashPool { jobs })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(work());
        });
        self.jobs
            .send(job)
            .map_err(|_| anyhow::anyhow!("password hashing threads stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("password hashing thread failed"))
    }
}
