//! Stories: seen by their author and the author's contacts, gone when they expire.

use nebula_wire::{Story, StoryList, StoryViews};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, Session, TestApp};
use crate::media::{MediaKind, MediaSetup, eventually, png, stored, uploaded};
use crate::on_every_store;

on_every_store!(
    stories_are_for_the_author_and_their_contacts,
    stories_expire_with_their_media,
);

async fn befriend(a: &Session, b: &Session) {
    for (from, to) in [(a, b), (b, a)] {
        let reply = from
            .post("/contacts/requests", json!({"user_id": to.user.id}))
            .await;
        assert!(reply.status.is_success(), "{}", reply.text());
    }
}

async fn stories_of(who: &Session) -> Vec<Story> {
    let list: StoryList = who.get("/stories").await.json();
    list.stories
}

async fn stories_are_for_the_author_and_their_contacts(backend: Backend, kind: MediaKind) {
    let Some(media) = MediaSetup::new(kind).await else {
        return;
    };
    let app = TestApp::spawn_with(backend, |config| media.apply(config)).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    befriend(&alice, &bob).await;
    let picture = uploaded(&alice, "sun.png", png(50, 50), "image/png").await;
    let reply = alice
        .post(
            "/stories",
            json!({"text": "morning", "media_id": picture.id}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let story: Story = reply.json();
    assert_eq!(story.user.id, alice.user.id);
    assert_eq!(story.text.as_deref(), Some("morning"));
    assert_eq!(story.media.as_ref().map(|m| m.id), Some(picture.id));
    let ttl = story.expires_at - story.created_at;
    assert_eq!(ttl.num_seconds(), 86_400);
    let text_only: Story = alice
        .post("/stories", json!({"text": "later"}))
        .await
        .json();
    // Newest first, for the author and a contact.
    for who in [&alice, &bob] {
        let ids: Vec<_> = stories_of(who).await.iter().map(|s| s.id).collect();
        assert_eq!(ids, [text_only.id, story.id], "{}", who.user.username);
    }
    // A contact can show its picture; a stranger cannot see it at all.
    assert_eq!(
        bob.get(&format!("/media/{}", picture.id)).await.status,
        StatusCode::OK
    );
    assert!(stories_of(&carol).await.is_empty());
    carol
        .get(&format!("/media/{}", picture.id))
        .await
        .assert_problem(404, "media_not_found");
    let views = format!("/stories/{}/views", story.id);
    carol
        .post(&views, json!({}))
        .await
        .assert_problem(404, "story_not_found");
    carol
        .delete(&format!("/stories/{}", story.id))
        .await
        .assert_problem(404, "story_not_found");
    // Views: recorded once, listed for the author only.
    assert_eq!(
        bob.post(&views, json!({})).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        bob.post(&views, json!({})).await.status,
        StatusCode::NO_CONTENT
    );
    let seen: StoryViews = alice.get(&views).await.json();
    let viewers: Vec<_> = seen.views.iter().map(|v| v.user.id).collect();
    assert_eq!(viewers, [bob.user.id]);
    bob.get(&views).await.assert_problem(403, "forbidden");
    bob.delete(&format!("/stories/{}", story.id))
        .await
        .assert_problem(403, "forbidden");
    // Bad input.
    alice
        .post("/stories", json!({}))
        .await
        .assert_problem(422, "validation_failed");
    let bobs = uploaded(&bob, "b.png", png(5, 5), "image/png").await;
    alice
        .post("/stories", json!({"media_id": bobs.id}))
        .await
        .assert_problem(422, "invalid_attachment");
    // Deleting: gone for everyone, and its media with it.
    let storage = media.storage();
    assert_eq!(
        alice.delete(&format!("/stories/{}", story.id)).await.status,
        StatusCode::NO_CONTENT
    );
    bob.post(&views, json!({}))
        .await
        .assert_problem(404, "story_not_found");
    let ids: Vec<_> = stories_of(&bob).await.iter().map(|s| s.id).collect();
    assert_eq!(ids, [text_only.id]);
    eventually("the deleted story's picture leaves the store", || async {
        !stored(&storage, picture.id).await
    })
    .await;
}

async fn stories_expire_with_their_media(backend: Backend, kind: MediaKind) {
    let Some(media) = MediaSetup::new(kind).await else {
        return;
    };
    let app = TestApp::spawn_with(backend, |config| {
        media.apply(config);
        config.story_ttl_seconds = 2;
        config.media_sweep_seconds = 1;
    })
    .await;
    let storage = media.storage();
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    befriend(&alice, &bob).await;
    let picture = uploaded(&alice, "sun.png", png(20, 20), "image/png").await;
    let story: Story = alice
        .post("/stories", json!({"media_id": picture.id}))
        .await
        .json();
    assert_eq!((story.expires_at - story.created_at).num_seconds(), 2);
    assert_eq!(stories_of(&bob).await.len(), 1);
    assert_eq!(
        bob.get(&format!("/media/{}", picture.id)).await.status,
        StatusCode::OK
    );
    eventually("the story expires for its viewers", || async {
        stories_of(&bob).await.is_empty()
    })
    .await;
    let views = format!("/stories/{}/views", story.id);
    for who in [&alice, &bob] {
        who.post(&views, json!({}))
            .await
            .assert_problem(404, "story_not_found");
    }
    alice
        .get(&views)
        .await
        .assert_problem(404, "story_not_found");
    alice
        .delete(&format!("/stories/{}", story.id))
        .await
        .assert_problem(404, "story_not_found");
    assert!(stories_of(&alice).await.is_empty());
    // The expiry job deletes the story and its media.
    eventually("the expired story's picture leaves the store", || async {
        !stored(&storage, picture.id).await
    })
    .await;
    eventually("the expired story is deleted", || async {
        app.query_i64("SELECT COUNT(*) FROM stories").await == 0
    })
    .await;
    bob.get(&format!("/media/{}", picture.id))
        .await
        .assert_problem(404, "media_not_found");
}
