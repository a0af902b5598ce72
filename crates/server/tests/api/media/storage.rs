//! The storage suite: the same behaviour from the disk store and the S3 store.

use nebula::media::MediaStorage;

use super::{MediaKind, MediaSetup};

async fn suite(storage: &MediaStorage) {
    assert_eq!(storage.read_all("media/missing").await.unwrap(), None);
    // Several parts' worth (the S3 store's parts are 5 MiB), streamed from a file.
    let bytes: Vec<u8> = (0..12 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();
    storage.put_file("media/big", file.path()).await.unwrap();
    assert_eq!(
        storage.read_all("media/big").await.unwrap().as_deref(),
        Some(&bytes[..])
    );
    let object = storage.get("media/big").await.unwrap().expect("stored");
    assert_eq!(object.size, bytes.len() as u64);
    storage
        .put_bytes("media/small", b"thumb".to_vec())
        .await
        .unwrap();
    assert_eq!(
        storage.read_all("media/small").await.unwrap().as_deref(),
        Some(&b"thumb"[..])
    );
    storage.delete("media/big").await.unwrap();
    assert_eq!(storage.read_all("media/big").await.unwrap(), None);
    // Deleting what is gone is fine.
    storage.delete("media/big").await.unwrap();
    storage.delete("media/never").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_store_keeps_reads_and_deletes() {
    let setup = MediaSetup::new(MediaKind::Fs).await.unwrap();
    suite(&setup.storage()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_store_keeps_reads_and_deletes() {
    let Some(setup) = MediaSetup::new(MediaKind::S3).await else {
        return;
    };
    suite(&setup.storage()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_s3_secret_is_refused() {
    let Some(setup) = MediaSetup::new(MediaKind::S3).await else {
        return;
    };
    let mut config = nebula::config::Config::for_database("sqlite::memory:");
    setup.apply(&mut config);
    config.s3_secret_access_key = Some("not-the-secret".into());
    let storage = MediaStorage::open(&config).unwrap();
    assert!(
        storage.put_bytes("media/x", b"x".to_vec()).await.is_err(),
        "s3s-fs checks signatures"
    );
}
