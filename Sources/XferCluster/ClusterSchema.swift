/// The tables and functions of a cluster in PostgreSQL, created or migrated by every instance at start.
///
/// One `DO` block, so that it runs as one transaction, under a transaction-level advisory lock so that instances
/// starting together migrate one after another. The version is kept in `xfer_meta`; a database migrated by a newer
/// xfer is refused rather than used. The functions are replaced on every start (they carry no data).
///
/// - `xfer_names`: one row per listener name (and `*`, the stream of broadcasts to receivers without a name): the
///   last `seq` given out, and when a listener last joined or left (a name is known within the hold period).
/// - `xfer_texts`: every text routed to a name, kept for the hold period (for resumes and for listeners that were
///   away: `pending` marks those routed while nobody listened); `only_*` marks a text for one connection.
/// - `xfer_instances`: each instance's heartbeat; receivers of an instance not seen for 5 s do not count.
/// - `xfer_receivers`: the receiving connections of every instance, by name (`*` for unnamed ones).
/// - `xfer_leases`: the fencing token of each upload id's current lease (the lock itself is a session advisory
///   lock of the holder's lease connection, released by PostgreSQL when that connection dies).
enum ClusterSchema {
    /// The schema version this build creates and understands.
    static let version = 1

    /// Creates or migrates everything; raises an exception for a newer schema.
    static let migration = #"""
        DO $migrate$
        DECLARE
          v text;
        BEGIN
          PERFORM pg_advisory_xact_lock(7878000001);
          CREATE TABLE IF NOT EXISTS xfer_meta (key text PRIMARY KEY, value text NOT NULL);
          SELECT value INTO v FROM xfer_meta WHERE key = 'schema_version';
          IF v IS NULL THEN
            CREATE TABLE xfer_names (
              name text PRIMARY KEY,
              last_seq bigint NOT NULL DEFAULT 0,
              last_seen timestamptz NOT NULL DEFAULT now()
            );
            CREATE TABLE xfer_texts (
              name text NOT NULL,
              seq bigint NOT NULL,
              sender text NOT NULL,
              body text NOT NULL,
              pending boolean NOT NULL,
              only_instance text,
              only_client integer,
              created timestamptz NOT NULL DEFAULT now(),
              PRIMARY KEY (name, seq)
            );
            CREATE INDEX xfer_texts_created ON xfer_texts (created);
            CREATE TABLE xfer_instances (instance text PRIMARY KEY, seen timestamptz NOT NULL DEFAULT now());
            CREATE TABLE xfer_receivers (
              instance text NOT NULL,
              client integer NOT NULL,
              name text NOT NULL,
              PRIMARY KEY (instance, client)
            );
            CREATE INDEX xfer_receivers_name ON xfer_receivers (name);
            CREATE TABLE xfer_leases (
              upload text PRIMARY KEY,
              instance text NOT NULL,
              token bigint NOT NULL,
              taken timestamptz NOT NULL DEFAULT now()
            );
            INSERT INTO xfer_names (name) VALUES ('*');
            INSERT INTO xfer_meta VALUES ('schema_version', '1'),
              ('epoch', md5(random()::text || clock_timestamp()::text));
          ELSIF v::integer > 1 THEN
            RAISE EXCEPTION 'the xfer tables in this database have schema version %, newer than this xfer (1): upgrade xfer', v;
          END IF;

          -- Receivers of instances seen within 5 s.
          CREATE OR REPLACE FUNCTION xfer_live(p_name text) RETURNS integer LANGUAGE sql STABLE AS $f$
            SELECT count(*)::integer FROM xfer_receivers r JOIN xfer_instances i ON i.instance = r.instance
            WHERE r.name = p_name AND i.seen > now() - interval '5 seconds'
          $f$;

          -- Appends a text to a locked name; returns its seq.
          CREATE OR REPLACE FUNCTION xfer_append(p_name text, p_sender text, p_body text, p_pending boolean,
              p_keep integer, p_instance text, p_client integer) RETURNS bigint LANGUAGE plpgsql AS $f$
          DECLARE
            v_seq bigint;
          BEGIN
            UPDATE xfer_names SET last_seq = last_seq + 1 WHERE name = p_name RETURNING last_seq INTO v_seq;
            INSERT INTO xfer_texts (name, seq, sender, body, pending, only_instance, only_client)
              VALUES (p_name, v_seq, p_sender, p_body, p_pending, p_instance, p_client);
            PERFORM pg_notify('xfer_bus', 't' || p_name);
            RETURN v_seq;
          END
          $f$;

          -- A text to every listener of a name: its seq and the live receivers, or no row for an unknown name.
          CREATE OR REPLACE FUNCTION xfer_route(p_name text, p_sender text, p_body text, p_hold double precision,
              p_keep integer) RETURNS TABLE (r_seq bigint, r_delivered integer) LANGUAGE plpgsql AS $f$
          DECLARE
            v_seen timestamptz;
            v_live integer;
          BEGIN
            SELECT last_seen INTO v_seen FROM xfer_names WHERE name = p_name FOR UPDATE;
            IF NOT FOUND THEN RETURN; END IF;
            v_live := xfer_live(p_name);
            IF v_live = 0 AND v_seen < now() - make_interval(secs => p_hold) THEN RETURN; END IF;
            r_seq := xfer_append(p_name, p_sender, p_body, v_live = 0, p_keep, NULL, NULL);
            r_delivered := v_live;
            RETURN NEXT;
          END
          $f$;

          -- Several texts to every listener of a name, in array order, as xfer_route gives each of them (one
          -- lock, one INSERT, one trim, one notification): their seqs and the live receivers, or no row for an
          -- unknown name.
          CREATE OR REPLACE FUNCTION xfer_route_many(p_name text, p_senders text[], p_bodies text[],
              p_hold double precision, p_keep integer) RETURNS TABLE (r_seq bigint, r_delivered integer)
              LANGUAGE plpgsql AS $f$
          DECLARE
            v_seen timestamptz;
            v_live integer;
            v_count integer := cardinality(p_bodies);
            v_first bigint;
          BEGIN
            SELECT last_seen INTO v_seen FROM xfer_names WHERE name = p_name FOR UPDATE;
            IF NOT FOUND OR v_count IS NULL OR v_count = 0 THEN RETURN; END IF;
            v_live := xfer_live(p_name);
            IF v_live = 0 AND v_seen < now() - make_interval(secs => p_hold) THEN RETURN; END IF;
            UPDATE xfer_names SET last_seq = last_seq + v_count WHERE name = p_name
              RETURNING last_seq - v_count INTO v_first;
            INSERT INTO xfer_texts (name, seq, sender, body, pending, only_instance, only_client)
              SELECT p_name, v_first + t.i, t.sender, t.body, v_live = 0, NULL, NULL
              FROM unnest(p_senders, p_bodies) WITH ORDINALITY AS t(sender, body, i);
            PERFORM pg_notify('xfer_bus', 't' || p_name);
            RETURN QUERY SELECT v_first + i, v_live FROM generate_series(1, v_count) AS i;
          END
          $f$;

          -- A text to one connection of a name (serve's `send ID`): its seq.
          CREATE OR REPLACE FUNCTION xfer_route_one(p_name text, p_sender text, p_body text, p_keep integer,
              p_instance text, p_client integer) RETURNS bigint LANGUAGE plpgsql AS $f$
          BEGIN
            PERFORM 1 FROM xfer_names WHERE name = p_name FOR UPDATE;
            IF NOT FOUND THEN RETURN NULL; END IF;
            RETURN xfer_append(p_name, p_sender, p_body, false, p_keep, p_instance, p_client);
          END
          $f$;

          -- A text to every receiver: each known name gets it (held where nobody listens), and `*` for receivers
          -- without a name. Names are locked in name order, as every other function locks one name.
          CREATE OR REPLACE FUNCTION xfer_broadcast(p_sender text, p_body text, p_hold double precision,
              p_keep integer) RETURNS TABLE (r_delivered integer, r_held integer) LANGUAGE plpgsql AS $f$
          DECLARE
            n record;
            v_live integer;
          BEGIN
            r_delivered := 0;
            r_held := 0;
            FOR n IN SELECT name, last_seen FROM xfer_names ORDER BY name FOR UPDATE LOOP
              v_live := xfer_live(n.name);
              CONTINUE WHEN v_live = 0 AND (n.name = '*' OR n.last_seen < now() - make_interval(secs => p_hold));
              PERFORM xfer_append(n.name, p_sender, p_body, v_live = 0, p_keep, NULL, NULL);
              r_delivered := r_delivered + v_live;
              IF v_live = 0 THEN r_held := r_held + 1; END IF;
            END LOOP;
            RETURN NEXT;
          END
          $f$;

          -- A receiver joins: registered, and the texts to replay to it. A fresh listener gets the pending texts;
          -- one resuming after p_since (>= 0) every held text after it, and the count it missed. Every row carries
          -- the name's last seq (where the connection's cursor starts); r_seq is NULL when there is nothing to
          -- replay.
          CREATE OR REPLACE FUNCTION xfer_join(p_instance text, p_client integer, p_name text, p_since bigint,
              p_hold double precision, p_max integer)
              RETURNS TABLE (r_seq bigint, r_sender text, r_body text, r_last bigint, r_missed bigint)
              LANGUAGE plpgsql AS $f$
          DECLARE
            v_last bigint;
            v_oldest bigint;
            v_missed bigint := 0;
            v_resume boolean;
          BEGIN
            INSERT INTO xfer_names (name) VALUES (p_name) ON CONFLICT DO NOTHING;
            SELECT last_seq INTO v_last FROM xfer_names WHERE name = p_name FOR UPDATE;
            INSERT INTO xfer_receivers VALUES (p_instance, p_client, p_name)
              ON CONFLICT (instance, client) DO UPDATE SET name = excluded.name;
            UPDATE xfer_names SET last_seen = now() WHERE name = p_name;
            IF p_name = '*' THEN
              r_last := v_last; r_missed := 0; RETURN NEXT; RETURN;
            END IF;
            v_resume := p_since >= 0 AND p_since <= v_last;
            IF v_resume THEN
              SELECT min(seq) INTO v_oldest FROM xfer_texts
                WHERE name = p_name AND only_client IS NULL AND seq > v_last - p_max
                  AND created > now() - make_interval(secs => p_hold);
              v_oldest := coalesce(v_oldest, v_last + 1);
              IF v_oldest > p_since + 1 THEN v_missed := least(v_oldest - p_since - 1, v_last - p_since); END IF;
            END IF;
            RETURN QUERY
              SELECT t.seq, t.sender, t.body, v_last, v_missed FROM xfer_texts t
              WHERE t.name = p_name AND t.only_client IS NULL AND t.seq > v_last - p_max
                AND t.created > now() - make_interval(secs => p_hold)
                AND (CASE WHEN v_resume THEN t.seq > p_since ELSE t.pending END)
              ORDER BY t.seq;
            IF NOT FOUND THEN
              r_last := v_last; r_missed := v_missed; RETURN NEXT;
            END IF;
            UPDATE xfer_texts SET pending = false WHERE name = p_name AND pending;
          END
          $f$;

          -- A receiver left: its name is remembered from now on for the hold period.
          CREATE OR REPLACE FUNCTION xfer_leave(p_instance text, p_client integer) RETURNS void LANGUAGE sql AS $f$
            WITH gone AS (DELETE FROM xfer_receivers WHERE instance = p_instance AND client = p_client RETURNING name)
            UPDATE xfer_names SET last_seen = now() WHERE name IN (SELECT name FROM gone)
          $f$;

          -- Housekeeping, run by every instance now and then: expired texts, receivers of instances gone for a
          -- minute, names nobody used for a day.
          -- Texts beyond the newest p_keep of their name go too, once a minute old: every instance's drain reads
          -- a text well within that (a drain further behind reports the texts it lost as missed), which a trim on
          -- each append could not promise to a drain behind a burst.
          CREATE OR REPLACE FUNCTION xfer_sweep(p_keep_seconds double precision, p_keep integer) RETURNS void
              LANGUAGE sql AS $f$
            DELETE FROM xfer_texts WHERE created < now() - make_interval(secs => p_keep_seconds);
            DELETE FROM xfer_texts t USING xfer_names n
              WHERE t.name = n.name AND t.seq <= n.last_seq - p_keep AND t.created < now() - interval '1 minute';
            DELETE FROM xfer_receivers r WHERE NOT EXISTS (
              SELECT 1 FROM xfer_instances i WHERE i.instance = r.instance AND i.seen > now() - interval '1 minute');
            DELETE FROM xfer_names n WHERE n.name <> '*' AND n.last_seen < now() - interval '1 day'
              AND NOT EXISTS (SELECT 1 FROM xfer_receivers r WHERE r.name = n.name);
          $f$;
        END
        $migrate$
        """#
}
