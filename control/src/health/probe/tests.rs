//! Probe pieces that need no network.

use super::dns;
use super::http::{judge, md5_hex};
use super::icmp;
use crate::health::machine::{FailKind, Outcome};
use crate::health::spec::Url;

fn url(status: Vec<(u16, u16)>, digest: Option<&str>) -> Url {
    Url {
        path: "/".into(),
        digest: digest.map(String::from),
        status,
        virtualhost: None,
    }
}

#[test]
fn http_status_and_digest_are_judged_as_keepalived_does() {
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(judge(&url(vec![], None), ok), Outcome::PASS);
    // `printf hello | md5sum`
    let md5 = "5d41402abc4b2a76b9719d911017c592";
    assert_eq!(md5_hex(b"hello"), md5);
    assert_eq!(judge(&url(vec![], Some(md5)), ok), Outcome::PASS);
    let Outcome::Fail(k, _) = judge(&url(vec![], Some("00000000000000000000000000000000")), ok)
    else {
        panic!()
    };
    assert_eq!(k, FailKind::Digest);
    let e500 = b"HTTP/1.1 500 Internal Server Error\r\n\r\n";
    let Outcome::Fail(k, _) = judge(&url(vec![], None), e500) else {
        panic!()
    };
    assert_eq!(k, FailKind::Status);
    assert_eq!(judge(&url(vec![(500, 503)], None), e500), Outcome::PASS);
    let Outcome::Fail(k, _) = judge(&url(vec![], None), b"garbage") else {
        panic!()
    };
    assert_eq!(k, FailKind::Protocol);
}

#[test]
fn dns_query_and_answer() {
    let q = dns::query(0x1234, 1, "www.example.com.").unwrap();
    assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
    assert_eq!(&q[12..16], b"\x03www");
    assert_eq!(&q[q.len() - 4..], &[0, 1, 0, 1]);
    assert!(dns::query(1, 1, &"a".repeat(64)).is_none());
    let mut answer = q.clone();
    answer[2] |= 0x80;
    assert_eq!(dns::judge(0x1234, &answer), Some(Outcome::PASS));
    assert_eq!(dns::judge(0x1235, &answer), None, "another query's answer");
    answer[3] = 3;
    let Some(Outcome::Fail(FailKind::Rcode, d)) = dns::judge(0x1234, &answer) else {
        panic!()
    };
    assert!(d.contains("NXDOMAIN"));
}

#[test]
fn icmp_echo_request_and_reply() {
    let r = icmp::echo_request(false, 7, 9);
    assert_eq!(r[0], 8);
    // A checksum over the whole message sums to 0xffff.
    let sum: u32 = r
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum();
    let folded = (sum & 0xffff) + (sum >> 16);
    assert_eq!(folded, 0xffff);
    let mut reply = vec![0x45u8; 20];
    reply.extend_from_slice(&r);
    reply[20] = 0;
    assert!(icmp::is_reply(false, &reply, 7, 9));
    assert!(!icmp::is_reply(false, &reply, 7, 10));
    let mut r6 = icmp::echo_request(true, 7, 9);
    r6[0] = 129;
    assert!(icmp::is_reply(true, &r6, 7, 9));
}
