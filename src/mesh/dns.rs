//! The one DNS query meshinit sends: is kuma-dp's DNS server there? With
//! transparent proxying the app's lookups are redirected to it (the
//! embedded DNS proxy or CoreDNS, `127.0.0.1:15053` by default), and
//! kuma-dp's readiness does not wait for it (CoreDNS never; the embedded
//! proxy's first map at most 15 s after kuma-dp's start). Any answer, of any
//! rcode, proves the listener: the name asked is not in the mesh's map, so
//! kuma-dp forwards it upstream and relays the answer (or answers
//! SERVFAIL when upstream fails). Only the framing is here; the driver does
//! the I/O.

/// The name asked: not a service of any mesh (service names cannot hold
/// this many labels under `.mesh`, which the check does not rely on).
pub const CHECK_NAME: &str = "meshinit-dns-check.invalid";

/// A standard query (RD set) for the A record of `name`, with `id`.
pub fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    // Flags: a standard query asking for recursion; one question.
    q.extend_from_slice(&[0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        let bytes = &label.as_bytes()[..label.len().min(63)];
        q.push(bytes.len() as u8);
        q.extend_from_slice(bytes);
    }
    // The root label, QTYPE A, QCLASS IN.
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Whether `msg` is a DNS response (the QR bit of a full header): from the
/// socket connected to the server, that is an answer, whatever its id
/// (a late answer to an earlier try counts) and rcode.
pub fn is_response(msg: &[u8]) -> bool {
    msg.len() >= 12 && msg[2] & 0x80 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_a_standard_a_query_for_the_name() {
        let q = query(0xbeef, "backend.mesh");
        assert_eq!(&q[..4], &[0xbe, 0xef, 0x01, 0x00]);
        assert_eq!(&q[4..6], &[0, 1], "one question");
        assert_eq!(
            &q[12..],
            b"\x07backend\x04mesh\x00\x00\x01\x00\x01",
            "labels, root, A, IN"
        );
        assert!(!is_response(&q), "a query is not a response");
    }

    #[test]
    fn any_response_counts_whatever_its_rcode() {
        let mut r = query(1, CHECK_NAME);
        r[2] |= 0x80; // QR
        r[3] |= 0x03; // NXDOMAIN
        assert!(is_response(&r));
        r[3] = (r[3] & 0xf0) | 0x02; // SERVFAIL
        assert!(is_response(&r));
        assert!(!is_response(&r[..11]), "a truncated header is not one");
    }
}
