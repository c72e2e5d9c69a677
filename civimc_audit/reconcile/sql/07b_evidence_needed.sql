-- Step 7b — which rows need date evidence (DESIGN "Date evidence: which change decided").
-- Mailchimp's last_changed also moves on a profile edit, so where Mailchimp wins on dates
-- against a CiviCRM history date and the outcome changes something, the activity feed must say
-- whether Mailchimp's status really changed later:
--   R2  Mailchimp wins, Civi-in,  MC-out -> remove_from_civicrm_group   (not its cannot_sync
--                                           other_email_subscribed)
--   R3  Mailchimp wins, Civi-out, MC-in  -> add_to_civicrm_group
-- with a dated CiviCRM history (no history, or an undated newest row, is not "against a CiviCRM
-- date": Mailchimp decides those anyway, or step 7 refuses them; nor is a member record the
-- rules cannot read, which step 7 holds back whatever its dates). Nothing else is worth a
-- request. "Wins" is by last_changed (step 6, as the sync decides), and a tie in the same second
-- counts whichever side tie_winner gives it to, so the evidence a snapshot gathers serves a
-- reconcile under every policy. The snapshot step reads `evidence_needed` and fetches those
-- feeds; step 8 flags an R2/R3 row that needs evidence but has none readable
-- (status_change_unknown). Under date_basis = 'status_change' a row the evidence flips is R7/R9,
-- and it has its evidence.
CREATE OR REPLACE TEMP VIEW evidenced AS
SELECT r.*,
       coalesce(has_member AND member_defect IS NULL AND civicrm_changed IS NOT NULL
                AND (last_changed_winner = 'mailchimp' OR tie)
                AND ((civi_in AND NOT mc_in AND NOT other_member_in)   -- R2, a removal
                     OR (NOT civi_in AND mc_in)),                      -- R3, an addition
                false) AS needs_evidence
FROM ruled r;

CREATE OR REPLACE TEMP VIEW evidence_needed AS
SELECT member_id FROM evidenced WHERE needs_evidence;
