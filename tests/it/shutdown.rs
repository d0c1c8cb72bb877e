//! Graceful shutdown (§15 item 16): every socket gets `pusher:error` 4200 and close 4200.

use crate::common::*;

#[tokio::test]
async fn shutdown_closes_sockets_with_4200_and_stops_accepting() {
    let t = start().await;
    let (mut a, _) = connect(t.addr, "key1").await;
    let (mut b, _) = connect(t.addr, "key1").await;
    subscribe_public(&mut b, "c").await;
    let addr = t.addr;
    let stopping = tokio::spawn(t.server.shutdown());
    for ws in [&mut a, &mut b] {
        let (texts, code, reason) = expect_close(ws).await;
        assert_eq!(code, 4200);
        assert!(reason.contains("shutting down"), "{reason}");
        expect_error(texts.last().unwrap(), Some(4200), "shutting down");
    }
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("shutdown finishes")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}
