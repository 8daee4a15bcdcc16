//! The subject of an X.509 certificate, rendered as Kafka's default principal builder
//! renders a TLS client's (`X500Principal.getName()`, RFC 2253): relative distinguished
//! names last-first, such as `CN=client,O=Example,C=DE`.
//!
//! Only the DER path to the subject is walked: Certificate, TBSCertificate, then past
//! the version, serial number, signature algorithm, issuer and validity.

/// One DER element: its tag, its content, and the bytes after it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |n, b| (n << 8) | usize::from(*b));
        (len, &rest[count..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const VERSION: u8 = 0xa0;

/// The certificate's subject, or `None` when the DER is not a certificate.
pub fn subject(der: &[u8]) -> Option<String> {
    let (SEQUENCE, certificate, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, mut tbs, _) = element(certificate)? else {
        return None;
    };
    if tbs.first() == Some(&VERSION) {
        tbs = element(tbs)?.2;
    }
    // serial number, signature algorithm, issuer, validity
    for _ in 0..4 {
        tbs = element(tbs)?.2;
    }
    let (SEQUENCE, mut name, _) = element(tbs)? else {
        return None;
    };
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (SET, mut set, rest) = element(name)? else {
            return None;
        };
        name = rest;
        let mut parts = Vec::new();
        while !set.is_empty() {
            let (SEQUENCE, pair, rest) = element(set)? else {
                return None;
            };
            set = rest;
            parts.push(attribute(pair)?);
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

/// `TYPE=value` of one AttributeTypeAndValue.
fn attribute(pair: &[u8]) -> Option<String> {
    let (OID, oid, rest) = element(pair)? else {
        return None;
    };
    let (_, value, _) = element(rest)?;
    let key = match oid {
        [0x55, 0x04, 0x03] => "CN".to_string(),
        [0x55, 0x04, 0x06] => "C".to_string(),
        [0x55, 0x04, 0x07] => "L".to_string(),
        [0x55, 0x04, 0x08] => "ST".to_string(),
        [0x55, 0x04, 0x0a] => "O".to_string(),
        [0x55, 0x04, 0x0b] => "OU".to_string(),
        other => other.iter().map(|b| format!("{b:02x}")).collect(),
    };
    Some(format!("{key}={}", escape(&String::from_utf8_lossy(value))))
}

/// RFC 2253 escapes for the characters that would end or split a value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DER of `tag` around `content`.
    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 0x80 {
            out.push(content.len() as u8);
        } else {
            out.extend([0x82, (content.len() >> 8) as u8, content.len() as u8]);
        }
        out.extend_from_slice(content);
        out
    }

    fn rdn(oid: &[u8], value: &str) -> Vec<u8> {
        let pair = [der(OID, oid), der(0x0c, value.as_bytes())].concat();
        der(SET, &der(SEQUENCE, &pair))
    }

    fn certificate(subject: Vec<u8>) -> Vec<u8> {
        let tbs = [
            der(VERSION, &der(0x02, &[2])),
            der(0x02, &[1, 2, 3]),
            der(SEQUENCE, &der(OID, &[0x2a, 0x86, 0x48])),
            der(SEQUENCE, &rdn(&[0x55, 0x04, 0x03], "issuer CA")),
            der(
                SEQUENCE,
                &[der(0x17, b"250101000000Z"), der(0x17, b"350101000000Z")].concat(),
            ),
            der(SEQUENCE, &subject),
            der(SEQUENCE, &[0u8; 200]),
        ]
        .concat();
        der(
            SEQUENCE,
            &[der(SEQUENCE, &tbs), der(SEQUENCE, &[]), der(0x03, &[0])].concat(),
        )
    }

    #[test]
    fn the_subject_reads_last_rdn_first_with_escapes() {
        let subject = [
            rdn(&[0x55, 0x04, 0x06], "DE"),
            rdn(&[0x55, 0x04, 0x0a], "Example, Inc"),
            rdn(&[0x55, 0x04, 0x03], "client.test"),
        ]
        .concat();
        assert_eq!(
            super::subject(&certificate(subject)),
            Some("CN=client.test,O=Example\\, Inc,C=DE".to_string())
        );
    }

    #[test]
    fn truncated_or_foreign_der_has_no_subject() {
        let cert = certificate(rdn(&[0x55, 0x04, 0x03], "client"));
        for len in 0..cert.len() {
            assert_eq!(subject(&cert[..len]), None, "{len} bytes");
        }
        assert_eq!(subject(b"not a certificate"), None);
    }
}
