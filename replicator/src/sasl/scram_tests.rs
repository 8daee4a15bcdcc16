use super::*;

/// One exchange of an RFC test vector: the client's nonce, the server's suffix, the
/// salt, and the four messages on the wire.
struct Vector {
    hash: ScramHash,
    client_nonce: &'static str,
    server_nonce: &'static str,
    salt: &'static str,
    client_first: &'static str,
    server_first: &'static str,
    client_final: &'static str,
    server_final: &'static str,
}

/// RFC 5802 section 5 (SCRAM-SHA-1).
const RFC_5802: Vector = Vector {
    hash: ScramHash::Sha1,
    client_nonce: "fyko+d2lbbFgONRv9qkxdawL",
    server_nonce: "3rfcNHYJY1ZVvWVs7j",
    salt: "QSXCR+Q6sek8bf92",
    client_first: "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
    server_first: "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
    client_final:
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
    server_final: "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
};

/// RFC 7677 section 3 (SCRAM-SHA-256).
const RFC_7677: Vector = Vector {
    hash: ScramHash::Sha256,
    client_nonce: "rOprNGfwEbeRWgbNEkqO",
    server_nonce: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    salt: "W22ZaJ0SNY7soEsUEjb6gQ==",
    client_first: "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
    server_first: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    client_final: "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    server_final: "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
};

fn credential(v: &Vector, password: &str) -> ScramCredential {
    let salt = BASE64.decode(v.salt).unwrap();
    ScramCredential::new(v.hash, password.as_bytes(), &salt, 4096)
}

fn check_server(v: &Vector) {
    let stored = credential(v, "pencil");
    let lookup = |user: &str| (user == "user").then(|| stored.clone());
    let (state, reply) = ScramServer::new(v.hash)
        .first(v.client_first.as_bytes(), lookup, v.server_nonce)
        .unwrap();
    assert_eq!(String::from_utf8(reply).unwrap(), v.server_first);
    let (user, reply) = state.finish(v.client_final.as_bytes()).unwrap();
    assert_eq!(user, "user");
    assert_eq!(String::from_utf8(reply).unwrap(), v.server_final);
}

fn check_client(v: &Vector) {
    let client = ScramClient::new(v.hash, "user", b"pencil", v.client_nonce);
    assert_eq!(String::from_utf8(client.first()).unwrap(), v.client_first);
    let (verify, reply) = client.respond(v.server_first.as_bytes()).unwrap();
    assert_eq!(String::from_utf8(reply).unwrap(), v.client_final);
    verify.finish(v.server_final.as_bytes()).unwrap();
}

#[test]
fn the_server_answers_the_rfc_5802_and_7677_vectors() {
    check_server(&RFC_5802);
    check_server(&RFC_7677);
}

#[test]
fn the_client_sends_the_rfc_5802_and_7677_vectors() {
    check_client(&RFC_5802);
    check_client(&RFC_7677);
}

#[test]
fn a_wrong_password_fails_the_proof_and_the_client_spots_a_forged_server() {
    let stored = credential(&RFC_7677, "not-pencil");
    let (state, _) = ScramServer::new(ScramHash::Sha256)
        .first(
            RFC_7677.client_first.as_bytes(),
            |_| Some(stored),
            RFC_7677.server_nonce,
        )
        .unwrap();
    let refused = state.finish(RFC_7677.client_final.as_bytes());
    assert!(matches!(refused, Err(ScramError::BadProof)));

    let client = ScramClient::new(ScramHash::Sha256, "user", b"pencil", RFC_7677.client_nonce);
    let (verify, _) = client.respond(RFC_7677.server_first.as_bytes()).unwrap();
    let forged = verify.finish(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    assert!(matches!(forged, Err(ScramError::BadServerSignature)));
}

#[test]
fn sha_512_client_and_server_agree_and_plain_matches_the_same_credential() {
    let stored = ScramCredential::new(ScramHash::Sha512, "sécret".as_bytes(), b"salt-512", 4096);
    assert!(stored.matches(ScramHash::Sha512, "sécret".as_bytes()));
    assert!(!stored.matches(ScramHash::Sha512, b"secret"));
    assert_eq!(stored.stored_key.len(), ScramHash::Sha512.key_len());
    let client = ScramClient::new(ScramHash::Sha512, "a,b=c", "sécret".as_bytes(), "cnonce");
    let first = client.first();
    assert_eq!(first, b"n,,n=a=2Cb=3Dc,r=cnonce");
    let (state, server_first) = ScramServer::new(ScramHash::Sha512)
        .first(
            &first,
            |user| (user == "a,b=c").then(|| stored.clone()),
            "snonce",
        )
        .unwrap();
    let (verify, client_final) = client.respond(&server_first).unwrap();
    let (user, server_final) = state.finish(&client_final).unwrap();
    assert_eq!(user, "a,b=c");
    verify.finish(&server_final).unwrap();
}

#[test]
fn a_client_final_nonce_need_only_end_with_the_servers_as_kafka_accepts() {
    let stored = ScramCredential::new(ScramHash::Sha256, b"pencil", b"salt", 4096);
    let first = |cnonce: &str| {
        ScramServer::new(ScramHash::Sha256)
            .first(
                format!("n,,n=user,r={cnonce}").as_bytes(),
                |_| Some(stored.clone()),
                "srv",
            )
            .unwrap()
    };
    // librdkafka 2.0 sends `r=<client nonce><client nonce><server nonce>`, and signs that.
    let (state, _) = first("abc");
    let server_first = "r=abcsrv,s=c2FsdA==,i=4096";
    let client = ScramClient::new(ScramHash::Sha256, "user", b"pencil", "abc");
    let (_, client_final) = client.respond(server_first.as_bytes()).unwrap();
    let bare = String::from_utf8(client_final).unwrap();
    assert!(bare.starts_with("c=biws,r=abcsrv,p="), "{bare}");
    let salted = ScramHash::Sha256.salted_password(b"pencil", b"salt", 4096);
    let client_key = ScramHash::Sha256.hmac(&salted, b"Client Key");
    let doubled = "c=biws,r=abcabcsrv";
    let signed = auth_message("n=user,r=abc", server_first, doubled);
    let signature = ScramHash::Sha256.hmac(&ScramHash::Sha256.digest(&client_key), &signed);
    let proof = BASE64.encode(xor(&client_key, &signature));
    assert!(state
        .finish(format!("{doubled},p={proof}").as_bytes())
        .is_ok());
    let (state, _) = first("abc");
    let other = state.finish(format!("c=biws,r=abcother,p={proof}").as_bytes());
    assert!(matches!(other, Err(ScramError::NonceMismatch)));
}

#[test]
fn kafka_dialect_refusals() {
    let server = |first: &str| {
        ScramServer::new(ScramHash::Sha256)
            .first(
                first.as_bytes(),
                |_| Some(credential(&RFC_7677, "pencil")),
                "s",
            )
            .map(|_| ())
    };
    assert_eq!(server("y,,n=user,r=abc"), Err(ScramError::ChannelBinding));
    assert_eq!(
        server("p=tls-unique,,n=user,r=abc"),
        Err(ScramError::ChannelBinding)
    );
    assert_eq!(
        server("n,a=other,n=user,r=abc"),
        Err(ScramError::AuthorizationId)
    );
    assert_eq!(server("n,a=user,n=user,r=abc"), Ok(()));
    assert_eq!(
        server("n,,n=user,r=abc,tokenauth=true"),
        Err(ScramError::Extension)
    );
    assert!(matches!(
        server("n,,n=us=ZZer,r=abc"),
        Err(ScramError::Malformed(_))
    ));
    assert!(matches!(server("garbage"), Err(ScramError::Malformed(_))));
    assert!(matches!(server("n,,r=abc"), Err(ScramError::Malformed(_))));
    let unknown = ScramServer::new(ScramHash::Sha256).first(b"n,,n=nobody,r=abc", |_| None, "s");
    assert!(matches!(unknown, Err(ScramError::UnknownUser)));
    let client = ScramClient::new(ScramHash::Sha256, "user", b"pencil", "abc");
    let weak = client.respond(b"r=abcdef,s=QSXCR+Q6sek8bf92,i=1000");
    assert!(matches!(weak, Err(ScramError::Iterations(1000))));
    let client = ScramClient::new(ScramHash::Sha256, "user", b"pencil", "abc");
    let foreign = client.respond(b"r=xyzdef,s=QSXCR+Q6sek8bf92,i=4096");
    assert!(matches!(foreign, Err(ScramError::NonceMismatch)));
}
