-- Step 1 — inputs. The two snapshots as clean relations for the steps below.
-- Matching rule: emails compare trimmed and lower-cased (`norm`). Empty addresses are no address.
CREATE OR REPLACE TEMP TABLE c_contact AS
SELECT id AS contact_id, display_name, first_name, last_name,
       coalesce(is_deleted, false) AS is_deleted,
       coalesce(do_not_email, false) AS do_not_email,
       coalesce(is_opt_out, false) AS is_opt_out,
       coalesce(is_deceased, false) AS is_deceased
FROM civicrm_contact
WHERE snapshot_id = getvariable('civicrm_snapshot');

CREATE OR REPLACE TEMP TABLE c_email AS
SELECT id AS email_id, contact_id, trim(email) AS email, lower(trim(email)) AS norm,
       coalesce(is_primary, false) AS is_primary, coalesce(is_bulkmail, false) AS is_bulkmail,
       coalesce(on_hold, 0) AS on_hold
FROM civicrm_email
WHERE snapshot_id = getvariable('civicrm_snapshot')
  AND contact_id IS NOT NULL AND email IS NOT NULL AND trim(email) <> '';

CREATE OR REPLACE TEMP TABLE m_member AS
SELECT id AS member_id, email_address, lower(trim(email_address)) AS norm, status,
       last_changed, fname, lname,
       status IN ('subscribed', 'pending') AS mc_in  -- Terms: MC-in
FROM mailchimp_member
WHERE snapshot_id = getvariable('mailchimp_snapshot');
