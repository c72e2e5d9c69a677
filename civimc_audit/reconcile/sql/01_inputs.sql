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
-- a status Mailchimp adds later can never cause a subscribe (R8 catches it when CiviCRM wins).
CREATE OR REPLACE TEMP TABLE m_member AS
SELECT id AS member_id, strip_email(email_address) AS email_address,
       normalize_email(email_address) AS norm, status, last_changed,
       coalesce(status IN ('subscribed', 'pending'), false) AS mc_in
FROM mailchimp_member
WHERE snapshot_id = getvariable('mailchimp_snapshot');
