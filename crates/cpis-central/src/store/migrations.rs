//! The central's schema migrations, embedded from `migrations/central/`. Applied in order at start;
//! each applied migration's SHA-256 is recorded and checked, so a shipped file that changes is caught.

use cpis_core::crypto::hazmat;

pub struct Migration {
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    pub fn sha256(&self) -> String {
        hex::encode(hazmat::sha256(self.sql.as_bytes()))
    }
}

pub const SQLITE: &[Migration] = &[
    Migration {
        name: "0001_init.sql",
        sql: include_str!("../../../../migrations/central/sqlite/0001_init.sql"),
    },
    Migration {
        name: "0002_live_lookups.sql",
        sql: include_str!("../../../../migrations/central/sqlite/0002_live_lookups.sql"),
    },
    Migration {
        name: "0003_la_last_upload.sql",
        sql: include_str!("../../../../migrations/central/sqlite/0003_la_last_upload.sql"),
    },
    Migration {
        name: "0004_fhir_clients.sql",
        sql: include_str!("../../../../migrations/central/sqlite/0004_fhir_clients.sql"),
    },
    Migration {
        name: "0005_name_search.sql",
        sql: include_str!("../../../../migrations/central/sqlite/0005_name_search.sql"),
    },
    Migration {
        name: "0006_plan_per_la.sql",
        sql: include_str!("../../../../migrations/central/sqlite/0006_plan_per_la.sql"),
    },
    Migration {
        name: "0007_security.sql",
        sql: include_str!("../../../../migrations/central/sqlite/0007_security.sql"),
    },
    Migration {
        name: "0008_delivery_claims.sql",
        sql: include_str!("../../../../migrations/central/sqlite/0008_delivery_claims.sql"),
    },
    Migration {
        name: "0009_user_sessions.sql",
        sql: include_str!("../../../../migrations/central/sqlite/0009_user_sessions.sql"),
    },
];

pub const POSTGRES: &[Migration] = &[
    Migration {
        name: "0001_init.sql",
        sql: include_str!("../../../../migrations/central/postgres/0001_init.sql"),
    },
    Migration {
        name: "0002_live_lookups.sql",
        sql: include_str!("../../../../migrations/central/postgres/0002_live_lookups.sql"),
    },
    Migration {
        name: "0003_la_last_upload.sql",
        sql: include_str!("../../../../migrations/central/postgres/0003_la_last_upload.sql"),
    },
    Migration {
        name: "0004_fhir_clients.sql",
        sql: include_str!("../../../../migrations/central/postgres/0004_fhir_clients.sql"),
    },
    Migration {
        name: "0005_name_search.sql",
        sql: include_str!("../../../../migrations/central/postgres/0005_name_search.sql"),
    },
    Migration {
        name: "0006_plan_per_la.sql",
        sql: include_str!("../../../../migrations/central/postgres/0006_plan_per_la.sql"),
    },
    Migration {
        name: "0007_security.sql",
        sql: include_str!("../../../../migrations/central/postgres/0007_security.sql"),
    },
    Migration {
        name: "0008_delivery_claims.sql",
        sql: include_str!("../../../../migrations/central/postgres/0008_delivery_claims.sql"),
    },
    Migration {
        name: "0009_user_sessions.sql",
        sql: include_str!("../../../../migrations/central/postgres/0009_user_sessions.sql"),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of every shipped migration, pinned. If this fails you edited a shipped migration: put
    /// the change in a new numbered file instead (databases in the field already ran the old text).
    const SHIPPED: &[(&str, &str, &str)] = &[
        (
            "sqlite",
            "0001_init.sql",
            "f28b4fb408665e2164ff4ebeb70c3a575392a0dcfc4f422ff2ac6a04bb124615",
        ),
        (
            "postgres",
            "0001_init.sql",
            "b1a72ae0d7f2a01e663e6e024f0962af76ff6917e7cdefe6a85c0daba64e8e86",
        ),
        (
            "sqlite",
            "0002_live_lookups.sql",
            "706ff27a352f1661961dbc745095b26ad931d0d09017b33655129276e116b3b4",
        ),
        (
            "postgres",
            "0002_live_lookups.sql",
            "1dd64813ccc3b0e8de02bc97ece510af1f4090517d4189992195677be2423158",
        ),
        (
            "sqlite",
            "0003_la_last_upload.sql",
            "403bd8fcd006012949984c5b0e1614d6669184eedf56023b3a7772b844a069da",
        ),
        (
            "postgres",
            "0003_la_last_upload.sql",
            "aced1d82047b0b4230bfe9121d5c6ad39017bd9dd5bc5ea529d1a8c6b25b0aa6",
        ),
        (
            "sqlite",
            "0004_fhir_clients.sql",
            "5bb1c0058712a3f6cc55d0063379a9c24357c47d7cfa7359cc1e7cada49b5d1a",
        ),
        (
            "postgres",
            "0004_fhir_clients.sql",
            "df4cbda316f6769024c9fd081afc985c78dbb575d9192571c21fd1365e283434",
        ),
        (
            "sqlite",
            "0005_name_search.sql",
            "2504543e43fe5091a7a8942a14bd1c623bdb54d8c8572deef9e0493b5afeb652",
        ),
        (
            "postgres",
            "0005_name_search.sql",
            "4a172357a94b94542f94af43fec0292bb3b7af70483ce285135d7a08ca843021",
        ),
        (
            "sqlite",
            "0006_plan_per_la.sql",
            "277826164adaa899d549d68cc8c5bff35b4eff7f3489c4e7663f52f767f32200",
        ),
        (
            "postgres",
            "0006_plan_per_la.sql",
            "2d9697766fcfd895f05574c89fe82210b1b9590f47ce15e9e93ee316ed51467a",
        ),
        (
            "sqlite",
            "0007_security.sql",
            "be21dce23a5b080025085a9712337d72ccb2a2a24e0d4d4f2d98c7caa026b827",
        ),
        (
            "postgres",
            "0007_security.sql",
            "03815aca0a4b652f73dd004d2b6c18612a87f9231ecd220de9931dbe7fa0263a",
        ),
        (
            "sqlite",
            "0008_delivery_claims.sql",
            "20caa51f4a604779368d6d98a49f83cd9b77a43a46661d680d0b5ec7e508ac0e",
        ),
        (
            "postgres",
            "0008_delivery_claims.sql",
            "36e9de697840d4108b43f5181ba768fbda17fc13c4a10cb5076202cc4d7ffa8f",
        ),
        (
            "sqlite",
            "0009_user_sessions.sql",
            "2f68a789229177dadc28686879e0ea23e2210c9628ada8427a3835ee8380b5c0",
        ),
        (
            "postgres",
            "0009_user_sessions.sql",
            "6a39568d49b1f7b8e50f9e99f963f83a52f6301313c83db11a95fb7028bfb8b9",
        ),
    ];

    #[test]
    fn shipped_migrations_never_change() {
        for (backend, name, expected) in SHIPPED {
            let list = if *backend == "sqlite" {
                SQLITE
            } else {
                POSTGRES
            };
            let m = list
                .iter()
                .find(|m| m.name == *name)
                .expect("shipped migration present");
            assert_eq!(
                m.sha256(),
                *expected,
                "{backend}/{name} changed after shipping"
            );
        }
    }

    #[test]
    fn migrations_are_in_order_and_both_backends_have_the_same_list() {
        let names = |l: &[Migration]| l.iter().map(|m| m.name).collect::<Vec<_>>();
        assert_eq!(names(SQLITE), names(POSTGRES));
        let mut sorted = names(SQLITE);
        sorted.sort();
        assert_eq!(sorted, names(SQLITE));
    }
}
