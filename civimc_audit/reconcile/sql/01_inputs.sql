-- Step 1 — inputs: the two snapshots as clean relations for the steps below.
-- Serves: the Terms of DESIGN "The rules" (MC-in for R1/R3/R5/R9, MC-out for R2/R4/R7/R8/R10)
-- and the matching rule (emails compare trimmed and lower-cased, `norm`). An empty address is
-- no address (R6 no_usable_email). Trimming strips all whitespace at both ends (tabs, line breaks,
-- no-break spaces: the macros strip_email/normalize_email of civimc_audit/emails.py, the same
-- normalisation as Mailchimp's member hash in Python); SQL's trim() strips only spaces. Dates arrive as naive UTC: the CiviCRM reader reads
-- TIMESTAMPs with session time_zone '+00:00', the Mailchimp reader converts last_changed.
CREATE OR REPLACE TEMP TABLE c_contact AS
SELECT id AS contact_id, display_name,
       coalesce(is_deleted, false) AS is_deleted,
       coalesce(do_not_email, false) AS do_not_email,
       coalesce(is_opt_out, false) AS is_opt_out,
       coalesce(is_deceased, false) AS is_deceased
FROM civicrm_contact
WHERE snapshot_id = getvariable('civicrm_snapshot');

CREATE OR REPLACE TEMP TABLE c_email AS
SELECT id AS email_id, contact_id, strip_email(email) AS email, normalize_email(email) AS norm,
       coalesce(is_primary, false) AS is_primary, coalesce(is_bulkmail, false) AS is_bulkmail,
       coalesce(on_hold, 0) AS on_hold
FROM civicrm_email
WHERE snapshot_id = getvariable('civicrm_snapshot')
  AND contact_id IS NOT NULL AND email IS NOT NULL AND strip_email(email) <> '';

-- Every member of the audience, any status (who gets a row). Unknown statuses are MC-out, so
-- a status Mailchimp adds later can never cause a subscribe.
-- member_defect: what makes a member record unsafe to act on, checked in this order — no id
-- (kept with id '' by the snapshot; its row gets a stand-in member_id of its own here, and
-- none in the outcome), no address, a status outside the six Mailchimp documents, no readable
-- last_changed (missing or not a time; the snapshot keeps the row with NULL). Step 7 makes
-- every row with such a member cannot_sync with the defect as its reason_code, whatever rule
-- R1–R10 it falls under: nobody is removed, unsubscribed or added on a record the rules
-- cannot read.
CREATE OR REPLACE TEMP TABLE m_member AS
SELECT CASE WHEN coalesce(id, '') = '' THEN concat('(no id) ', rowid) ELSE id END AS member_id,
       strip_email(email_address) AS email_address,
       normalize_email(email_address) AS norm, status, last_changed,
       coalesce(status IN ('subscribed', 'pending'), false) AS mc_in,
       CASE
           WHEN coalesce(id, '') = '' THEN 'no_member_id'
           WHEN coalesce(strip_email(email_address), '') = '' THEN 'no_member_email'
           WHEN status IS NULL OR status NOT IN ('subscribed', 'pending', 'unsubscribed',
                                                 'cleaned', 'archived', 'transactional')
               THEN 'unknown_member_status'
           WHEN last_changed IS NULL THEN 'no_member_change_date'
       END AS member_defect
FROM mailchimp_member
WHERE snapshot_id = getvariable('mailchimp_snapshot');
