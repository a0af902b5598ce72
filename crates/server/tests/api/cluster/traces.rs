//! One message's trace across two nodes, exported over OTLP to a real receiver: the sender's
//! WebSocket frame on one node, its commit, the bus publication, the other node's receipt and
//! its fan-out to the recipient, linked parent to child.

use nebula_wire::ClientEvent;

use super::{Engine, TestCluster, services};
use crate::otlp::{OtlpReceiver, ReceivedSpan, find};
use crate::ws_client::WsClient;

on_both_engines!(a_message_is_one_trace_from_the_senders_frame_to_the_other_nodes_recipients);

async fn a_message_is_one_trace_from_the_senders_frame_to_the_other_nodes_recipients(
    engine: Engine,
) {
    let Some((backend, url)) = services("traces", engine) else {
        return;
    };
    let receiver = OtlpReceiver::start().await;
    let cluster = TestCluster::start(
        &backend,
        &url,
        2,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
            // Export every 50 ms rather than every 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    )
    .await;
    let alice = cluster.register(0, "alice").await;
    let room = alice.create_room("Traced", false).await;
    let bob = cluster.register(1, "bob").await;
    bob.join(room.id).await;
    let mut bobs: WsClient = bob.subscribed(room.id).await;
    let mut alices: WsClient = alice.subscribed(room.id).await;

    alices
        .send(ClientEvent::MessageSend {
            room_id: room.id,
            content: "follow me".into(),
            client_msg_id: Some("traced-1".into()),
            reply_to: None,
            attachments: None,
        })
        .await;
    assert_eq!(bobs.next_message().await.content, "follow me");

    let spans = receiver
        .wait_for(
            "the message's trace down to the other node's fan-out",
            |spans| {
                spans
                    .iter()
                    .filter(|s| s.name == "ws.message.send")
                    .any(|root| {
                        let trace = &root.trace_id;
                        find(spans, trace, "hub.fanout").is_some()
                            && spans
                                .iter()
                                .any(|s| &s.trace_id == trace && s.name == "bus.receive")
                            && spans
                                .iter()
                                .filter(|s| &s.trace_id == trace && s.name == "hub.fanout")
                                .count()
                                >= 2
                    })
            },
        )
        .await;
    let root = spans.iter().find(|s| s.name == "ws.message.send").unwrap();
    let trace = root.trace_id.clone();
    let in_trace = |name: &str| -> Vec<&ReceivedSpan> {
        spans
            .iter()
            .filter(|s| s.trace_id == trace && s.name == name)
            .collect()
    };
    let child_of = |child: &ReceivedSpan, parent: &ReceivedSpan| {
        assert_eq!(
            child.parent_span_id, parent.span_id,
            "{} must be a child of {}",
            child.name, parent.name
        );
    };
    assert!(root.parent_span_id.is_empty(), "the frame starts the trace");
    assert_eq!(root.service, "nebula");
    let commit = in_trace("message.commit");
    assert_eq!(commit.len(), 1);
    child_of(commit[0], root);
    let publish = in_trace("bus.publish");
    assert_eq!(publish.len(), 1);
    child_of(publish[0], commit[0]);
    let receive = in_trace("bus.receive");
    assert_eq!(receive.len(), 1, "one other node");
    child_of(receive[0], publish[0]);
    assert_ne!(
        receive[0].instance, root.instance,
        "received on the other node's process"
    );
    // Each node's fan-out: alice's own node under the publication, bob's under the receipt.
    let fanouts = in_trace("hub.fanout");
    let local = fanouts
        .iter()
        .find(|s| s.parent_span_id == publish[0].span_id)
        .expect("the sender's node fans out under the publication");
    assert_eq!(local.instance, root.instance);
    let remote = fanouts
        .iter()
        .find(|s| s.parent_span_id == receive[0].span_id)
        .expect("the other node fans out under the receipt");
    assert_eq!(remote.instance, receive[0].instance);
}
