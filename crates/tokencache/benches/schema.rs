//! Parse and serialize a realistic ~7 KB user partition (MSAL V3 JSON), and look a
//! token up in the decoded partition. Secrets are fake but of realistic length.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tokencache::schema::{AccessTokenQuery, Partition, Secret, TokenRequest, TokenResponse};

const CID: &str = "11111111-aaaa-4bbb-8ccc-000000000001";
const TID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const OID: &str = "00000000-0000-0000-66f3-3332eca7ea81";
const NOW: i64 = 1_700_000_000;

/// A fake JWT: real header/payload structure, filler signature; `len` bytes long.
fn fake_jwt(claims: &str, len: usize) -> String {
    let head = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"RS256","kid":"fake-key-id"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.as_bytes());
    let mut s = format!("{head}.{body}.");
    let mut i = 0u32;
    while s.len() < len {
        s.push(char::from(b'A' + (i % 26) as u8));
        i = i.wrapping_mul(31).wrapping_add(7);
    }
    s
}

fn user_partition() -> Partition {
    let mut p = Partition::new();
    let client_info = URL_SAFE_NO_PAD.encode(format!(r#"{{"uid":"{OID}","utid":"{TID}"}}"#));
    let id_token = fake_jwt(
        &format!(
            r#"{{"aud":"{CID}","iss":"https://login.microsoftonline.com/{TID}/v2.0","oid":"{OID}","tid":"{TID}","sub":"fake-subject","preferred_username":"ada@contoso.example","name":"Ada Lovelace"}}"#
        ),
        750,
    );
    let resources: [&[&str]; 3] = [
        &[
            "https://graph.microsoft.com/User.Read",
            "https://graph.microsoft.com/Mail.Read",
        ],
        &[
            "api://orders-api/Orders.Read",
            "api://orders-api/Orders.Write",
        ],
        &["https://storage.azure.com/user_impersonation"],
    ];
    for (i, scopes) in resources.iter().enumerate() {
        let resp = TokenResponse {
            access_token: Some(Secret::new(fake_jwt(
                &format!(r#"{{"aud":"resource-{i}","oid":"{OID}","tid":"{TID}","scp":"x"}}"#),
                700,
            ))),
            token_type: Some("Bearer".into()),
            expires_in: Some(3600 + i as i64),
            ext_expires_in: Some(7200),
            refresh_in: None,
            refresh_token: Some(Secret::new(fake_jwt("{}", 600))),
            id_token: Some(Secret::new(id_token.clone())),
            client_info: Some(client_info.clone()),
            scope: Some(format!(
                "{} openid profile offline_access",
                scopes.join(" ")
            )),
            foci: None,
            extra: Default::default(),
        };
        let req = TokenRequest {
            client_id: CID,
            environment: "login.microsoftonline.com",
            realm: TID,
            scopes,
            user_assertion: None,
        };
        p.add_token_response(&req, &resp, NOW).expect("fixture");
    }
    p
}

fn bench(c: &mut Criterion) {
    let p = user_partition();
    let blob = p.to_vec();
    eprintln!(
        "schema bench: partition blob {} bytes, {} records",
        blob.len(),
        p.len()
    );
    let mut g = c.benchmark_group("schema");
    g.throughput(Throughput::Bytes(blob.len() as u64));
    g.bench_function("parse_user_partition", |b| {
        b.iter(|| Partition::parse(black_box(&blob)).expect("parses"))
    });
    g.bench_function("parse_deferred_user_partition", |b| {
        b.iter(|| Partition::parse_deferred(black_box(&blob)).expect("parses"))
    });
    g.bench_function("to_vec_user_partition", |b| {
        b.iter(|| black_box(&p).to_vec())
    });
    g.bench_function("parse_via_serde_json_value_for_reference", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&blob)).expect("json"))
    });
    g.finish();

    let hid = format!("{OID}.{TID}");
    let scopes = ["api://orders-api/orders.read"];
    let q = AccessTokenQuery {
        home_account_id: Some(&hid),
        realm: Some(TID),
        ..AccessTokenQuery::new(CID, &scopes)
    };
    c.bench_function("schema/find_access_token", |b| {
        b.iter(|| {
            black_box(&p)
                .find_access_token(black_box(&q), NOW)
                .is_some()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
