//! Signing in and unlocking: the online sign-in that (re)creates a user's PIN wrap and the device
//! unlock, the offline PIN unlock with its counter, delay and lockout, and the lease that ends
//! offline use. The crypto is in `vault`; this is where it meets the tables.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{
    cache, delete_meta, enrolled_device_id, get_meta, meta_keys, parse_ts, put_meta, ts,
    DeviceStore, SqlContext, StoreError, Unlocked,
};
use crate::vault::{self, CacheKeys, FeedKey, UserUnlockWrap, VaultError, MAX_PIN_ATTEMPTS};
use crate::wire::UserProfile;

/// Removes every user's PIN wrap and, with `device_too`, the device unlock and the lease.
pub(super) fn clear_unlocks(conn: &Connection, device_too: bool) -> Result<(), StoreError> {
    conn.execute("DELETE FROM user_unlock", [])
        .ctx("removing user unlocks")?;
    if device_too {
        conn.execute("DELETE FROM device_unlock", [])
            .ctx("removing the device unlock")?;
        delete_meta(conn, meta_keys::LEASE_EXPIRES_AT)?;
        delete_meta(conn, meta_keys::LEASE_MAC)?;
        delete_meta(conn, meta_keys::FEED_KEY)?;
    }
    Ok(())
}

fn store_lease(
    conn: &Connection,
    expires_at: DateTime<Utc>,
    lease_mac: &[u8; 32],
) -> Result<(), StoreError> {
    // AutoSi, exactly as the MAC's message writes it, so the stored text round-trips to the same instant.
    put_meta(
        conn,
        meta_keys::LEASE_EXPIRES_AT,
        &expires_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
    )?;
    put_meta(conn, meta_keys::LEASE_MAC, &B64.encode(lease_mac))
}

/// The stored lease: its expiry and the central's MAC over it.
type StoredLease = (DateTime<Utc>, Vec<u8>);

fn read_lease(conn: &Connection) -> Result<Option<StoredLease>, StoreError> {
    let (Some(at), Some(mac)) = (
        get_meta(conn, meta_keys::LEASE_EXPIRES_AT)?,
        get_meta(conn, meta_keys::LEASE_MAC)?,
    ) else {
        return Ok(None);
    };
    let mac = B64
        .decode(mac)
        .map_err(|_| StoreError::Corrupt("the lease MAC is not base64".into()))?;
    Ok(Some((parse_ts(&at)?, mac)))
}

fn read_user_wrap(
    conn: &Connection,
    user_id: &str,
) -> Result<Option<(UserUnlockWrap, u32, Option<String>)>, StoreError> {
    conn.prepare_cached(
        "SELECT salt, iterations, sealed, failed_attempts, last_failed_at FROM user_unlock WHERE user_id = ?1",
    )
    .ctx("reading a user unlock")?
    .query_row([user_id], |r| {
        Ok((
            UserUnlockWrap {
                salt: r.get(0)?,
                iterations: r.get::<_, i64>(1)? as u32,
                sealed: r.get(2)?,
            },
            r.get::<_, i64>(3)? as u32,
            r.get(4)?,
        ))
    })
    .optional()
    .ctx("reading a user unlock")
}

const FEED_KEY_AAD: &[u8] = b"cpis-field/feed-key/v1";

impl DeviceStore {
    /// Keeps the region's feed key (received at an online sign-in) sealed under the data key, so a
    /// later unlock, offline too, can open the feed's pages while the device's own key cannot.
    pub fn keep_feed_key(&mut self, keys: &CacheKeys, key: &FeedKey) -> Result<(), StoreError> {
        let plain = zeroize::Zeroizing::new(format!("{}\n{}", key.id(), key.to_base64().as_str()));
        let sealed = keys.data.seal(FEED_KEY_AAD, plain.as_bytes());
        put_meta(&self.conn, meta_keys::FEED_KEY, &B64.encode(sealed))
    }

    /// The feed key kept at the last online sign-in; `None` before the first one.
    pub fn feed_key(&self, keys: &CacheKeys) -> Result<Option<FeedKey>, StoreError> {
        let Some(stored) = get_meta(&self.conn, meta_keys::FEED_KEY)? else {
            return Ok(None);
        };
        let corrupt = || StoreError::Corrupt("the kept feed key does not open".into());
        let sealed = B64.decode(stored).map_err(|_| corrupt())?;
        let plain = keys
            .data
            .open(FEED_KEY_AAD, &sealed)
            .map_err(|_| corrupt())?;
        let text = std::str::from_utf8(&plain).map_err(|_| corrupt())?;
        let (id, key) = text.split_once('\n').ok_or_else(corrupt)?;
        FeedKey::from_base64(id, key)
            .map(Some)
            .map_err(|_| corrupt())
    }
}

impl DeviceStore {
    /// An online sign-in: the central vouched for `user` and handed over the device's lease key and
    /// a MAC'd expiry. Recovers the cache keys (creating them on the first sign-in), (re)writes
    /// this user's PIN wrap with a fresh salt, clears their wrong-PIN counter, stores the lease.
    pub fn login_online(
        &mut self,
        user: &UserProfile,
        pin: &str,
        lease_key: &[u8; 32],
        expires_at: DateTime<Utc>,
        lease_mac: &[u8; 32],
    ) -> Result<Unlocked, VaultError> {
        let device_id = enrolled_device_id(&self.conn)?.ok_or(VaultError::NotEnrolled)?;
        if !vault::verify_lease_mac(lease_key, device_id, expires_at, lease_mac) {
            // The central computes this MAC; a mismatch means a broken or forged sign-in response.
            return Err(VaultError::LeaseTampered);
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| StoreError::Sqlite {
                context: "starting a sign-in",
                source,
            })?;
        let existing: Option<Vec<u8>> = tx
            .query_row("SELECT sealed FROM device_unlock WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()
            .ctx("reading the device unlock")?;
        let recovered = existing.and_then(|sealed| {
            vault::open_device_unlock(&self.secret, lease_key, device_id, &sealed).ok()
        });
        let keys = match recovered {
            Some(keys) => keys,
            None => {
                // First sign-in, or the central issued a new lease key: whatever is cached was sealed
                // under keys nobody can recover any more, so start afresh and let the sync refill it.
                let keys = CacheKeys::generate();
                cache::clear_cache(&tx)?;
                tx.execute("DELETE FROM audit_log", [])
                    .ctx("dropping an unreadable audit log")?;
                clear_unlocks(&tx, true)?;
                tx.execute(
                    "INSERT INTO device_unlock (id, sealed) VALUES (1, ?1)",
                    [vault::seal_device_unlock(
                        &self.secret,
                        lease_key,
                        device_id,
                        &keys,
                    )],
                )
                .ctx("writing the device unlock")?;
                tracing::info!("new cache keys created");
                keys
            }
        };
        let wrap = vault::seal_user_unlock(
            &self.secret,
            pin,
            self.options.pin_iterations,
            lease_key,
            user,
        );
        tx.execute(
            "INSERT INTO user_unlock (user_id, salt, iterations, sealed, failed_attempts, last_failed_at)
             VALUES (?1, ?2, ?3, ?4, 0, NULL)
             ON CONFLICT (user_id) DO UPDATE SET salt = excluded.salt, iterations = excluded.iterations,
                 sealed = excluded.sealed, failed_attempts = 0, last_failed_at = NULL",
            params![user.id, wrap.salt, wrap.iterations as i64, wrap.sealed],
        )
        .ctx("writing a user unlock")?;
        store_lease(&tx, expires_at, lease_mac)?;
        tx.commit().ctx("committing a sign-in")?;
        tracing::info!(user_id = %user.id, lease_expires_at = %expires_at, "signed in online");
        Ok(Unlocked {
            keys,
            user: user.clone(),
            lease_expires_at: expires_at,
        })
    }

    /// An offline unlock with the user's PIN at time `now`.
    ///
    /// A wrong PIN only moves the counter; the fifth in a row destroys this user's wrap. After the
    /// PIN opens, the stored lease must carry a valid MAC under the recovered lease key and not have
    /// ended; an ended lease removes every user's wrap, so the cache stays shut until the central is
    /// reached (the device unlock is useless without a lease key).
    pub fn unlock(
        &mut self,
        user_id: &str,
        pin: &str,
        now: DateTime<Utc>,
    ) -> Result<Unlocked, VaultError> {
        let device_id = enrolled_device_id(&self.conn)?.ok_or(VaultError::NotEnrolled)?;
        // The attempt is counted before the PIN is tried, in one write transaction: parallel
        // attempts (two processes, or one killed mid-derivation) can never test more PINs than the
        // limit allows. A right PIN clears the count afterwards.
        let (wrap, failed_before) = {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .ctx("starting an unlock")?;
            let (wrap, failed, last_failed_at) =
                read_user_wrap(&tx, user_id)?.ok_or(VaultError::NoLocalUnlock)?;
            if let Some(last) = last_failed_at.as_deref().map(parse_ts).transpose()? {
                let delay = vault::pin_delay(failed);
                let elapsed = now - last;
                if elapsed < chrono::Duration::zero() {
                    // The clock went back: restart the wait from now rather than make the user
                    // wait out however far it jumped.
                    tx.execute(
                        "UPDATE user_unlock SET last_failed_at = ?2 WHERE user_id = ?1",
                        params![user_id, ts(now)],
                    )
                    .ctx("recording a clock change")?;
                    if delay > chrono::Duration::zero() {
                        tx.commit().ctx("recording a clock change")?;
                        return Err(VaultError::TooSoon {
                            retry_after_secs: delay.num_seconds() as u64,
                        });
                    }
                } else if elapsed < delay {
                    let left = delay - elapsed;
                    let secs = (left.num_milliseconds() as u64).div_ceil(1000);
                    return Err(VaultError::TooSoon {
                        retry_after_secs: secs.max(1),
                    });
                }
            }
            tx.execute(
                "UPDATE user_unlock SET failed_attempts = failed_attempts + 1, last_failed_at = ?2
                 WHERE user_id = ?1",
                params![user_id, ts(now)],
            )
            .ctx("counting a PIN attempt")?;
            tx.commit().ctx("counting a PIN attempt")?;
            (wrap, failed)
        };

        let opened = match vault::open_user_unlock(&self.secret, user_id, pin, &wrap) {
            Ok(opened) => opened,
            Err(_) => {
                let failed = failed_before + 1;
                if failed >= MAX_PIN_ATTEMPTS {
                    self.conn
                        .execute("DELETE FROM user_unlock WHERE user_id = ?1", [user_id])
                        .ctx("removing a locked-out unlock")?;
                    tracing::warn!(user_id, "local unlock removed after too many wrong PINs");
                    return Err(VaultError::LockedOut);
                }
                tracing::info!(user_id, failed, "wrong PIN");
                return Err(VaultError::WrongPin {
                    attempts_left: MAX_PIN_ATTEMPTS - failed,
                });
            }
        };
        self.conn
            .execute(
                "UPDATE user_unlock SET failed_attempts = 0, last_failed_at = NULL WHERE user_id = ?1",
                [user_id],
            )
            .ctx("clearing the wrong-PIN counter")?;
        if opened.user.id != user_id {
            return Err(VaultError::Corrupt(
                "the unlock belongs to another user".into(),
            ));
        }

        let (expires_at, mac) = read_lease(&self.conn)?
            .ok_or_else(|| VaultError::Corrupt("no lease is stored".into()))?;
        if !vault::verify_lease_mac(&opened.lease_key, device_id, expires_at, &mac) {
            tracing::warn!("stored lease failed its integrity check");
            return Err(VaultError::LeaseTampered);
        }
        if now > expires_at {
            clear_unlocks(&self.conn, false)?;
            tracing::warn!(lease_expired_at = %expires_at, "lease ended: user unlocks removed");
            return Err(VaultError::LeaseExpired {
                expired_at: expires_at,
            });
        }

        let sealed: Vec<u8> = self
            .conn
            .query_row("SELECT sealed FROM device_unlock WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()
            .ctx("reading the device unlock")?
            .ok_or_else(|| VaultError::Corrupt("the device unlock is missing".into()))?;
        let keys = vault::open_device_unlock(&self.secret, &opened.lease_key, device_id, &sealed)
            .map_err(|_| {
            VaultError::Corrupt("the device unlock does not open with the lease key".into())
        })?;
        Ok(Unlocked {
            keys,
            user: opened.user,
            lease_expires_at: expires_at,
        })
    }

    /// Stores a renewed lease from the central. Works while locked: the MAC is checked at the next
    /// unlock, when the lease key is at hand.
    pub fn renew_lease(
        &mut self,
        expires_at: DateTime<Utc>,
        lease_mac: &[u8; 32],
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction().ctx("starting a lease renewal")?;
        store_lease(&tx, expires_at, lease_mac)?;
        tx.commit().ctx("committing a lease renewal")
    }

    /// The stored lease expiry (unauthenticated until an unlock verifies it).
    pub fn lease_expires_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(read_lease(&self.conn)?.map(|(at, _)| at))
    }

    /// Users with a local unlock on this device.
    pub fn local_users(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT user_id FROM user_unlock ORDER BY user_id")
            .ctx("listing local users")?;
        let rows = stmt
            .query_map([], |r| r.get(0))
            .ctx("listing local users")?;
        rows.collect::<Result<_, _>>().ctx("listing local users")
    }

    /// Test hook: the device id the lease MACs are bound to.
    #[cfg(test)]
    pub(crate) fn device_id_for_tests(&self) -> uuid::Uuid {
        enrolled_device_id(&self.conn).unwrap().unwrap()
    }
}
