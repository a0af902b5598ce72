//! Who is online: a bounded list in `subscribed`, the whole list a page at a time.

use std::collections::BTreeSet;

use nebula_wire::{OnlinePage, ServerEvent};
use reqwest::StatusCode;

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(subscribed_lists_a_few_online_users_and_the_rest_page_over_rest);

async fn subscribed_lists_a_few_online_users_and_the_rest_page_over_rest(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| config.subscribed_online_max = 3).await;
    let owner = app.register("owner").await;
    let room = owner.create_room("Crowd", false).await;
    let mut sockets = Vec::new();
    let mut names = BTreeSet::new();
    for n in 0..7 {
        let user = app.register(&format!("user{n}")).await;
        user.join(room.id).await;
        names.insert(user.user.username.clone());
        sockets.push(user.subscribed(room.id).await);
    }
    let mut watcher = owner.ws("/ws").await;
    watcher
        .send(nebula_wire::ClientEvent::Subscribe {
            room_id: room.id,
            since_seq: None,
            since_rev: None,
        })
        .await;
    names.insert("owner".into());
    let subscribed = watcher
        .expect(|e| matches!(e, ServerEvent::Subscribed { .. }))
        .await;
    let ServerEvent::Subscribed {
        online,
        online_count,
        ..
    } = subscribed
    else {
        unreachable!()
    };
    assert_eq!(online_count, 8);
    let listed: Vec<_> = online.iter().map(|u| u.username.clone()).collect();
    let first_three: Vec<_> = names.iter().take(3).cloned().collect();
    assert_eq!(listed, first_three, "the first by username");

    // The whole list, two at a time.
    let mut seen = Vec::new();
    let mut query = format!("/rooms/{}/online?limit=2", room.id);
    loop {
        let page: OnlinePage = owner.get(&query).await.json();
        assert_eq!(page.online_count, 8);
        seen.extend(page.users.iter().map(|u| u.username.clone()));
        match page.next {
            Some(next) => query = format!("/rooms/{}/online?limit=2&after={next}", room.id),
            None => break,
        }
    }
    assert_eq!(seen, names.iter().cloned().collect::<Vec<_>>());

    // Bad cursors are refused; private rooms stay invisible.
    owner
        .get(&format!("/rooms/{}/online?after=no%20spaces", room.id))
        .await
        .assert_problem(400, "invalid_query");
    let den = owner.create_room("Den", true).await;
    let stranger = app.register("stranger").await;
    stranger
        .get(&format!("/rooms/{}/online", den.id))
        .await
        .assert_problem(404, "room_not_found");
    assert_eq!(
        stranger
            .get(&format!("/rooms/{}/online", room.id))
            .await
            .status,
        StatusCode::OK,
        "a public room's online list is as visible as its member list"
    );
}
